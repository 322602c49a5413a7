"""Where models run: CPU models load before fork (shared pages); CUDA sessions load per worker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nluserve.runtime.session import ProviderUnavailableError, providers_for
from nluserve.settings import Settings


def test_cpu_models_are_preloaded_and_cuda_sessions_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NLUSERVE_DEVICE", raising=False)
    assert Settings().device == "cpu" and Settings().preload_models()
    monkeypatch.setenv("NLUSERVE_DEVICE", "cuda")
    cuda = Settings(workers=4)
    assert cuda.device == "cuda" and not cuda.preload_models()


def test_unknown_devices_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailableError, match="unknown device"):
        providers_for("tpu")


def test_cpu_provider_list_never_includes_a_gpu_provider() -> None:
    assert providers_for("cpu") == ["CPUExecutionProvider"]
