"""Deployment tests: rendered files checked by the real tools, backups of a real SQLite database.

A tool these tests rely on (nginx, caddy, promtool, logrotate, systemd-analyze, uv) skips its
test on a developer machine and fails it under ``CI=true``, so a CI image that lost a Debian
package cannot go green by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from nluserve.deploy.render import RenderOptions, render_files, write_files
from nluserve.settings import Settings
from tests.support.services import (  # noqa: F401  (pytest finds fixtures by name)
    postgres_server,
    postgres_url,
)

REPO = Path(__file__).resolve().parents[3]
DOMAIN = "api.example.com"


def missing_tool(tool: str) -> None:
    """Skip (developer machine) or fail (CI) because ``tool`` is not installed or cannot run."""
    reason = f"{tool} is not available here; install it to run the deployment checks"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class _Isolated(Settings):
    """Settings from the constructor only, whatever this shell's NLUSERVE_* variables say."""

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: Any, init_settings: Any, **_: Any
    ) -> tuple[Any, ...]:
        return (init_settings,)


def settings(**values: Any) -> Settings:
    return _Isolated(**values)


_PATHS = {"prefix", "data_dir", "backup_dir", "log_dir", "acme_webroot"}


def options(**overrides: Any) -> RenderOptions:
    values: dict[str, Any] = {"domain": DOMAIN, "workers": 2, "settings": settings()}
    values.update({k: PurePosixPath(v) if k in _PATHS else v for k, v in overrides.items()})
    return RenderOptions(**values)


def render(out: Path, **overrides: Any) -> Path:
    write_files(render_files(options(**overrides)), out)
    return out
