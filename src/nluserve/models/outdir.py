"""Where a new model directory is written: never over someone's files.

``train`` and ``model import`` write into ``OUT.partial`` and then swap it in for ``OUT``. Both
directories are removed first, so each is checked before any work starts: ``OUT`` may be new,
empty or a model directory (retraining replaces a model), never a file or a directory of other
things; ``OUT.partial`` may only be a leftover of an earlier run (it carries a marker); and no
input of the run may live inside either.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from nluserve.errors import NluserveError

MANIFEST = "manifest.json"
PARTIAL_MARK = ".nluserve-partial"


class OutputDirError(NluserveError):
    """``--out`` names something a model directory must not replace."""


def partial_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_output_dir(out: Path, inputs: Iterable[Path] = ()) -> None:
    """Raise OutputDirError unless writing a model to ``out`` can lose nothing but a model."""
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise OutputDirError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputDirError(
            f"--out {out} holds files and is not a model directory: give a new or empty "
            "directory (a model directory is replaced)"
        )
    tmp = partial_of(out)
    if tmp.exists() and not (tmp.is_dir() and _ours(tmp)):
        raise OutputDirError(f"{tmp} exists and was not left by nluserve: move it away first")
    for given in inputs:
        path = given.resolve()
        for directory in (out.resolve(), tmp.resolve()):
            if path == directory or directory in path.parents:
                raise OutputDirError(f"{given} lies inside {directory}, which --out replaces")


def fresh_partial(out: Path) -> Path:
    """``OUT.partial``, empty and marked as this run's (an earlier leftover is removed)."""
    check_output_dir(out)
    tmp = partial_of(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / PARTIAL_MARK).touch()
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` (new, empty or a model directory: checked again) by the finished ``tmp``."""
    check_output_dir(out)
    (tmp / PARTIAL_MARK).unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _ours(tmp: Path) -> bool:
    return not any(tmp.iterdir()) or (tmp / PARTIAL_MARK).exists() or (tmp / MANIFEST).is_file()
