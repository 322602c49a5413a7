"""Settings meeting their host: empty variables, CPU quotas, a data directory made by others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nluserve import settings as settings_module
from nluserve.settings import Settings, _cgroup_cpu_quota, ensure_data_dir, usable_cores


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # What Compose passes for ${NLUSERVE_ADMIN_KEY:-} when .env has no key.
    monkeypatch.setenv("NLUSERVE_ADMIN_KEY", "")
    monkeypatch.setenv("NLUSERVE_REDIS_URL", "")
    s = Settings()
    assert s.admin_key is None and s.redis_url is None


def test_a_placeholder_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLUSERVE_ADMIN_KEY", "changeme")
    with pytest.raises(ValueError, match="placeholder"):
        Settings()


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert _cgroup_cpu_quota(tmp_path) == 2.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert _cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert _cgroup_cpu_quota(tmp_path) == 0.5


def test_a_quota_caps_the_cores_and_a_fraction_still_gets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(settings_module, "_cgroup_cpu_quota", lambda: None)
    assert usable_cores() == affinity
    monkeypatch.setattr(settings_module, "_cgroup_cpu_quota", lambda: 0.5)
    assert usable_cores() == 1
    monkeypatch.setattr(settings_module, "_cgroup_cpu_quota", lambda: affinity + 8.0)
    assert usable_cores() == affinity


def test_a_data_dir_owned_by_someone_else_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o770)
    data.chmod(0o2770)  # an emptyDir with fsGroup: root's, group-writable
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(data).st_uid + 1)
    assert ensure_data_dir(Settings(data_dir=data)) == data
    assert data.stat().st_mode & 0o7777 == 0o2770


def test_our_own_data_dir_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    ensure_data_dir(Settings(data_dir=data))
    assert data.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NLUSERVE_DEFAULT_RATE_PER_S", "1e-300"),
        ("NLUSERVE_DEFAULT_QUOTA_DAILY", str(10**13)),
        ("NLUSERVE_DEFAULT_BURST", str(10**10)),
    ],
)
def test_defaults_for_new_tenants_have_the_tenants_bounds(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable.removeprefix("NLUSERVE_").lower()):
        Settings()


@pytest.mark.parametrize(
    ("host", "auth", "open_"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("127.0.0.2", False, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("10.0.0.5", False, True),
        ("api.example.com", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_serving_without_auth_beyond_loopback_is_noticed(
    host: str, auth: bool, open_: bool
) -> None:
    assert Settings(host=host, auth=auth).open_without_auth() is open_


def test_list_settings_take_json_or_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from nluserve.settings import Settings

    monkeypatch.setenv("NLUSERVE_MODELS", "general, medical")
    monkeypatch.setenv("NLUSERVE_TRUSTED_PROXIES", '["10.0.0.5", "10.0.0.6"]')
    s = Settings()
    assert s.models == ["general", "medical"]
    assert s.trusted_proxies == ["10.0.0.5", "10.0.0.6"]
    monkeypatch.setenv("NLUSERVE_MODELS", "[general")
    with pytest.raises(ValueError, match="not a JSON list"):
        Settings()
