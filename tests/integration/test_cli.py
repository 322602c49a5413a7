"""The CLI: clear one-line errors for broken models, eval --json, predict, model verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_cluener


def nluserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m nluserve ARGS``, with ``env`` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "nluserve", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
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


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the graphs would run in the inference process
def test_serve_refuses_a_device_this_onnxruntime_cannot_drive(tmp_path: Path, workers: str) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return  # a GPU build: bench/cuda_check.py covers serving there
    env_run = subprocess.run(
        [
            *(sys.executable, "-m", "nluserve", "serve", "--device", "cuda"),
            *("--port", "0", "--workers", workers),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "NLUSERVE_DATA_DIR": str(tmp_path / "data"), "NLUSERVE_AUTH": "false"},
    )
    assert env_run.returncode == 1
    assert "needs CUDAExecutionProvider" in env_run.stderr
    assert "install onnxruntime-gpu" in " ".join(env_run.stderr.split())
    assert "Traceback" not in env_run.stderr


def test_serve_refuses_an_unknown_device() -> None:
    proc = nluserve("serve", "--device", "tpu")
    assert proc.returncode == 1
    assert "device" in proc.stderr and "'cpu' or 'cuda'" in proc.stderr
    assert "Traceback" not in proc.stderr
