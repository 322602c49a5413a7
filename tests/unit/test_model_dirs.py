"""Model directories: a new one replaces only a model directory and only its own leftovers; a
verified one holds nothing its manifest does not list."""

from __future__ import annotations

from pathlib import Path

import pytest

from nluserve.models.outdir import (
    PARTIAL_MARK,
    OutputDirError,
    check_output_dir,
    fresh_partial,
    swap_in,
)


def test_a_model_directory_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "old.onnx").write_bytes(b"old")
    tmp = fresh_partial(out)
    assert (tmp / PARTIAL_MARK).exists()
    (tmp / "manifest.json").write_text('{"new": 1}')
    swap_in(tmp, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert not tmp.exists()


def test_a_leftover_of_an_earlier_run_is_cleared_but_a_strangers_directory_is_not(
    tmp_path: Path,
) -> None:
    out = tmp_path / "model"
    left = fresh_partial(out)  # a run that died before swapping in
    (left / "model.onnx").write_bytes(b"half")
    assert not any(p.name == "model.onnx" for p in fresh_partial(out).iterdir())
    stranger = tmp_path / "other.partial"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not left by nluserve"):
        check_output_dir(tmp_path / "other")
    assert (stranger / "notes.txt").exists()


@pytest.mark.parametrize("make", ["file", "foreign"])
def test_a_file_or_a_directory_of_other_things_is_refused(tmp_path: Path, make: str) -> None:
    out = tmp_path / "out"
    if make == "file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "thesis.txt").write_text("x")
    with pytest.raises(OutputDirError):
        check_output_dir(out)
    assert out.exists()


def _model_copy(source: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "model"
    shutil.copytree(source, out)
    return out


def test_verify_refuses_an_unlisted_file_and_a_name_outside_the_directory(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    import json

    from nluserve.errors import ModelIntegrityError
    from nluserve.models.store import read_manifest, verify

    model = _model_copy(tiny_ner_dir, tmp_path)
    verify(model, read_manifest(model))  # as made: fine
    (model / "ngrams.json").write_text("{}")  # the loader would read it
    with pytest.raises(ModelIntegrityError, match=r"does not list: ngrams\.json"):
        verify(model, read_manifest(model))
    (model / "ngrams.json").unlink()
    raw = json.loads((model / "manifest.json").read_text())
    raw["files"]["../../etc/hostname"] = "0" * 64
    (model / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelIntegrityError, match="outside it"):
        verify(model, read_manifest(model))


def test_an_invalid_manifest_is_named_in_one_line(tmp_path: Path) -> None:
    from nluserve.errors import ModelIntegrityError
    from nluserve.models.store import read_manifest

    (tmp_path / "manifest.json").write_text('{"name": "x", "task": "ner"}')
    with pytest.raises(ModelIntegrityError) as raised:
        read_manifest(tmp_path)
    said = str(raised.value)
    assert "\n" not in said and "invalid manifest: " in said and "version" in said, said
