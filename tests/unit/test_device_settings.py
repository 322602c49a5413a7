"""Where models run: CPU models load before fork (shared pages); on CUDA the graphs run in the
inference process, or (with it off) in a session per worker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from nluserve.models.store import BUNDLED_DIR
from nluserve.runtime.session import ProviderUnavailableError, providers_for
from nluserve.server.run import settle_inference_process
from nluserve.settings import Settings


def test_cpu_models_are_preloaded_and_per_worker_cuda_sessions_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NLUSERVE_DEVICE", raising=False)
    monkeypatch.delenv("NLUSERVE_INFERENCE_PROCESS", raising=False)
    assert Settings().device == "cpu" and Settings().preload_models()
    monkeypatch.setenv("NLUSERVE_DEVICE", "cuda")
    monkeypatch.setenv("NLUSERVE_INFERENCE_PROCESS", "off")
    cuda = Settings(workers=4)
    assert cuda.device == "cuda" and not cuda.preload_models()


@pytest.mark.parametrize(
    ("device", "workers", "setting", "expected"),
    [
        ("cpu", 4, "auto", False),  # preloading before the fork already shares the weights
        ("cuda", 1, "auto", False),  # one worker: one CUDA context anyway
        ("cuda", 4, "auto", True),
        ("cpu", 1, "on", True),
        ("cuda", 4, "off", False),
    ],
)
def test_when_the_inference_process_is_used(
    device: str, workers: int, setting: str, expected: bool
) -> None:
    settings = Settings(device=device, workers=workers, inference_process=setting)  # type: ignore[arg-type]
    assert settings.use_inference_process() is expected
    # Workers that hold no session may be forked from a loaded master even on a GPU.
    assert settings.preload_models() is (device == "cpu" or expected)


def test_unknown_devices_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailableError, match="unknown device"):
        providers_for("tpu")


def test_cpu_provider_list_never_includes_a_gpu_provider() -> None:
    assert providers_for("cpu") == ["CPUExecutionProvider"]


def _model_dir(tmp_path: Path, name: str, graph_bytes: int) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    shutil.copy(BUNDLED_DIR / "general" / "manifest.json", directory / "manifest.json")
    with (directory / "model.onnx").open("wb") as fh:
        fh.truncate(graph_bytes)  # sparse: only the size matters here
    return directory


@pytest.mark.parametrize(
    ("device", "workers", "graph_mib", "setting", "expected"),
    [
        ("cpu", 2, 420, "auto", "on"),  # BERT-base size: one queue for every worker's calls
        ("cpu", 2, 16, "auto", "off"),  # the bundled size: the round trip would cost 5-20 %
        ("cpu", 1, 420, "auto", "off"),  # one worker already has one queue
        ("cuda", 2, 16, "auto", "on"),
        ("cpu", 2, 420, "off", "off"),  # an explicit choice stands
        ("cpu", 1, 16, "on", "on"),
    ],
)
def test_serve_settles_auto_by_the_largest_served_graph(
    tmp_path: Path, device: str, workers: int, graph_mib: int, setting: str, expected: str
) -> None:
    small = _model_dir(tmp_path, "small", 1 << 20)
    big = _model_dir(tmp_path, "big", graph_mib << 20)
    settings = Settings(
        device=device,  # type: ignore[arg-type]
        workers=workers,
        inference_process=setting,  # type: ignore[arg-type]
        models=[str(small), str(big), "no-such-model"],
    )
    settled = settle_inference_process(settings)
    assert settled.inference_process == expected
    assert settled.use_inference_process() is (expected == "on")
    assert settled.models == settings.models
