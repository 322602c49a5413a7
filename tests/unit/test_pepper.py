"""The generated pepper: one value for every process that starts at once, never empty."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nluserve.errors import NluserveError
from nluserve.settings import Settings
from nluserve.tenancy.service import load_pepper


def test_processes_starting_together_get_one_pepper(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:
        peppers = list(pool.map(lambda _: load_pepper(settings), range(32)))
    assert len(set(peppers)) == 1 and len(peppers[0]) == 64
    assert [p.name for p in (tmp_path / "data" / "secrets").iterdir()] == ["pepper"]


def test_an_empty_pepper_file_is_an_error_not_an_empty_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secrets" / "pepper"
    path.parent.mkdir(parents=True)
    path.write_text("")
    with pytest.raises(NluserveError, match="empty"):
        load_pepper(Settings(data_dir=tmp_path / "data"))
