"""The CLI: clear one-line errors for broken models, eval --json, predict, model verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_cluener


def nluserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nluserve", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_unknown_model_is_a_clear_error() -> None:
    proc = nluserve("predict", "no-such-model", "张三")
    assert proc.returncode == 1
    assert "unknown model 'no-such-model'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checksum_mismatch_and_missing_file_are_clear_errors(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ner_dir, broken)
    with (broken / "vocab.json").open("a", encoding="utf-8") as fh:
        fh.write(" ")
    proc = nluserve("model", "verify", str(broken))
    assert proc.returncode == 1 and "checksum mismatch for vocab.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    (broken / "model.onnx").unlink()
    proc = nluserve("predict", str(broken), "张三")
    assert proc.returncode == 1 and "missing file model.onnx" in proc.stderr
    assert nluserve("model", "verify", str(tiny_ner_dir)).returncode == 0


def test_eval_json_prints_one_object_with_the_documented_keys(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    data = write_cluener(tmp_path / "small.jsonl", copies=2)
    proc = nluserve("eval", str(tiny_ner_dir), str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"precision", "recall", "f1", "per_label", "n"} <= result.keys()
    assert result["n"] == 8


def test_predict_json_gives_exact_offsets(tiny_ner_dir: Path) -> None:
    text = "张三在北京大学读书。😀"
    proc = nluserve("predict", str(tiny_ner_dir), text, "--json")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert all(text[e["start"] : e["end"]] == e["text"] for e in result["entities"])
