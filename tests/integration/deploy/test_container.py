"""Dockerfile, .dockerignore and compose.yaml, checked without a Docker engine (there is none in
CI): the serving dependency set from uv.lock, the image's user and health check, the compose
graph and its Caddyfile through ``caddy validate``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nluserve.server.run import KEEPALIVE_S
from nluserve.settings import Settings
from tests.integration.deploy.conftest import REPO, missing_tool

DOCKERFILE = "\n".join(
    line
    for line in (REPO / "Dockerfile").read_text().splitlines()
    if not line.lstrip().startswith("#")  # instructions only
)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def _stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_serving_dependency_set_has_no_pytorch() -> None:
    uv = shutil.which("uv")
    if uv is None:
        missing_tool("uv")
    proc = subprocess.run(
        [str(uv), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    names = {
        re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower()
        for line in proc.stdout.splitlines()
        if line and not line.startswith(("#", " "))
    }
    assert {"onnxruntime", "gunicorn", "fastapi"} <= names
    assert not names & {"torch", "transformers", "jieba", "onnx", "nvidia-cudnn-cu12"}


def test_image_is_multistage_non_root_and_installs_serving_deps_only() -> None:
    stages = _stages()
    assert len(stages) >= 3  # uv binary, build, runtime
    runtime = stages[-1]
    assert "COPY --from=build /app/.venv /app/.venv" in runtime
    assert "uv " not in runtime  # no package manager in the runtime stage
    syncs = re.findall(r"uv sync [^\n\\]*", DOCKERFILE)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "--extra" not in DOCKERFILE and "--all-extras" not in DOCKERFILE
    (user,) = re.findall(r"^USER (\S+)", runtime, re.M)
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = re.findall(r"^HEALTHCHECK .*?(?<!\\)$", runtime, re.M | re.S)
    assert "/healthz" in healthcheck
    assert "NLUSERVE_HOST=0.0.0.0" in runtime
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", DOCKERFILE, re.M):
        assert ":" in image and not image.endswith(":latest"), image


def test_build_context_admits_only_the_project() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {"pyproject.toml", "uv.lock", "README.md", "src"}


def test_compose_runs_migrate_once_before_the_app_and_publishes_only_the_proxy() -> None:
    services = _compose()["services"]
    assert set(services) == {"nluserve", "migrate", "postgres", "redis", "caddy"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    depends = services["nluserve"]["depends_on"]
    assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"caddy"}
    for name in ("nluserve", "migrate"):
        svc = services[name]
        assert svc["user"].split(":")[0] not in {"0", "root"}
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert _compose()["networks"]["backend"]["internal"] is True


def test_compose_pins_images_and_takes_secrets_only_from_placeholders() -> None:
    compose = _compose()
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), (name, image)
    text = (REPO / "compose.yaml").read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "NLUSERVE_KEY_PEPPER"):
        assert f"${{{secret}:?" in text
    assert re.findall(r"://[^:\s]*:([^@$\s]+)@", text) == []  # no literal password in a URL


def _interpolated(value: str, dotenv: dict[str, str]) -> str:
    """What compose makes of ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m[1], m[2], m[3]
        if dotenv.get(name):
            return dotenv[name]
        assert op != ":?", f"compose refuses to start without {name}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value).replace("$$", "$")


def test_compose_environment_starts_without_the_optional_admin_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dotenv = {
        "POSTGRES_PASSWORD": "a" * 48,
        "REDIS_PASSWORD": "b" * 48,
        "NLUSERVE_KEY_PEPPER": "c" * 64,
    }  # no NLUSERVE_ADMIN_KEY: docs/deploy.md calls it optional
    for name in list(os.environ):
        if name.startswith("NLUSERVE_"):
            monkeypatch.delenv(name)
    environment = _compose()["x-nluserve"]["environment"]
    for name, value in environment.items():
        monkeypatch.setenv(name, _interpolated(str(value), dotenv))
    assert os.environ["NLUSERVE_ADMIN_KEY"] == ""
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.admin_key is None
    assert settings.key_pepper is not None and settings.key_pepper.get_secret_value() == "c" * 64


def test_compose_migrate_data_dir_belongs_to_the_service_user() -> None:
    # Docker makes a tmpfs root's (mode 1777) unless told otherwise, and `migrate` makes its
    # data directory private (ensure_data_dir), which only the owner may do.
    migrate = _compose()["services"]["migrate"]
    uid, gid = migrate["user"].split(":")
    (data,) = [t for t in migrate["tmpfs"] if t.split(":")[0] == "/var/lib/nluserve"]
    options = dict(o.split("=", 1) for o in data.split(":", 1)[1].split(","))
    assert (options["uid"], options["gid"], options["mode"]) == (uid, gid, "0700")


def test_compose_caddyfile_passes_caddy_validate(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        missing_tool("caddy")
    content = _compose()["configs"]["caddyfile"]["content"]
    # What compose's interpolation does: ${VAR:-default} -> default, $$ -> $.
    content = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", content).replace("$$", "$")
    assert "${" not in content
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(content)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NLUSERVE_DOMAIN": "api.example.com",
        "ACME_EMAIL": "ops@example.com",
    }
    proc = subprocess.run(
        [str(caddy), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "max_size 1048576" in content
    # The app closes idle keep-alive connections after KEEPALIVE_S; Caddy must close first.
    (keepalive,) = re.findall(r"^\s*keepalive (\d+)s$", content, re.M)
    assert 0 < int(keepalive) < KEEPALIVE_S
    # Only a request id nluserve would keep too, so that both logs name a request alike.
    assert "@no_request_id not header_regexp X-Request-ID ^[A-Za-z0-9._:-]{1,128}$" in content


def test_every_compose_service_forbids_gaining_privileges() -> None:
    # postgres and redis drop to their users with gosu (setuid(2), not a setuid binary), so
    # no-new-privileges costs them nothing; Caddy keeps only the capability to bind 80/443.
    services = _compose()["services"]
    for name, svc in services.items():  # YAML's merge key gives migrate/nluserve the anchor's
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
    caddy = services["caddy"]
    assert caddy["cap_drop"] == ["ALL"]
    assert caddy["cap_add"] == ["NET_BIND_SERVICE"]


def test_serving_installs_from_pypi_alone() -> None:
    # uv reads [tool.uv] find-links on every sync, even --frozen --no-dev: a directory there
    # that a server or the Docker build lacks (/opt/wheels) failed every serving install.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "find-links" not in project["tool"]["uv"]
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    local = {
        p["name"]
        for p in lock["package"]
        if not str(p["source"].get("registry", "https://")).startswith("https://")
        and "editable" not in p["source"]
    }
    assert local == {"torch"}  # the train extra's CPU wheel only, never in the serving set
