"""The one place that imports onnxruntime: building sessions with deliberate options."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nluserve.errors import NluserveError
from nluserve.settings import usable_cores

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ProviderUnavailableError(NluserveError):
    """The configured execution provider is not in this onnxruntime build."""


def providers_for(device: str) -> list[str]:
    """ORT providers for ``cpu`` or ``cuda``; refuses a device this onnxruntime cannot drive.

    ORT silently falls back to the CPU when a provider fails to load, which would turn a
    GPU deployment into a slow CPU one without a word; we check up front and after loading.
    """
    if device not in PROVIDERS:
        raise ProviderUnavailableError(f"unknown device {device!r}; use one of {sorted(PROVIDERS)}")
    wanted = PROVIDERS[device]
    if wanted[0] not in ort.get_available_providers():
        raise ProviderUnavailableError(
            f"device {device!r} needs {wanted[0]}, but onnxruntime {ort.__version__} offers "
            f"{ort.get_available_providers()} (install onnxruntime-gpu for cuda)"
        )
    return wanted


def default_threads() -> int:
    """Intra-op threads for one session: ``NLUSERVE_ORT_THREADS`` or the usable cores."""
    env = os.environ.get("NLUSERVE_ORT_THREADS")
    if env:
        return max(1, int(env))
    return usable_cores()  # the CPU affinity, capped by a container's CPU quota


class OnnxBackend:
    """An InferenceSession shared by every thread of the process.

    - intra_op threads: given by the caller's thread budget, so processes x threads never
      exceed the cores (oversubscription turns 40 ms into seconds on a busy CPU);
    - inter_op threads = 1 with sequential execution: our graphs are chains, parallel
      branches would only add thread contention;
    - graph optimisation ORT_ENABLE_ALL: constant folding and fusions, done once at load;
    - the CPU memory arena stays on (reused buffers between runs), but with
      ``arena_extend_strategy=kSameAsRequested`` so one long batch does not double the arena;
    - spinning is off so idle threads do not burn the cores other processes need.
    InferenceSession.run is thread-safe, so several threads may call ``run`` at once.
    """

    def __init__(
        self, graph: Path, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.enable_cpu_mem_arena = True
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        chosen = providers or ["CPUExecutionProvider"]
        provider_options: list[dict[str, str]] = [
            {"arena_extend_strategy": "kSameAsRequested"} if p == "CUDAExecutionProvider" else {}
            for p in chosen
        ]
        self.session = ort.InferenceSession(
            str(graph), sess_options=opts, providers=chosen, provider_options=provider_options
        )
        if self.session.get_providers()[0] != chosen[0]:
            raise ProviderUnavailableError(
                f"{chosen[0]} failed to load (session runs on {self.session.get_providers()})"
            )
        self.provider = chosen[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.threads = opts.intra_op_num_threads
        self._lock = threading.Lock()

    def input_width(self, name: str) -> int | None:
        """The fixed last dimension of the graph input ``name``; None if dynamic or absent."""
        for i in self.session.get_inputs():
            if i.name == name and i.shape and isinstance(i.shape[-1], int):
                return int(i.shape[-1])
        return None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph on the inputs it declares; returns its first output."""
        out = self.session.run(None, {k: feeds[k] for k in self.input_names})
        return np.asarray(out[0])
