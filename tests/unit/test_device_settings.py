"""Where models run: CPU models load before fork (shared pages); on CUDA the graphs run in the
inference process, or (with it off) in a session per worker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nluserve.runtime.session import ProviderUnavailableError, providers_for
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
