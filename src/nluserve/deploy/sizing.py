"""How many gunicorn workers a machine can hold: bounded by its cores and by its memory."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from nluserve.settings import usable_cores

# Memory one worker process adds with every default model loaded (its PSS under load), in GiB.
# Source: docs/benchmarks.md, "memory by workers" (bench/serve.py measures PSS with 1 and 4
# workers; the per-worker figure is (PSS_4 - PSS_1) / 3 plus the shared model pages / workers).
# Measured (docs/benchmarks.md): a BERT-base-size model is 742 MiB PSS with 1 worker and 858 MiB
# with 4 (+39 MiB per worker); the three bundled models are 471 MiB with 2 workers. 1.0 GiB per
# worker stays deliberately conservative: it errs towards fewer workers, never towards OOM.
MODEL_GIB = 1.0

# Kept free for the OS, the proxy, Redis/PostgreSQL clients and the page cache.
RESERVED_GIB = 1.0


@dataclass(frozen=True)
class Machine:
    """What the target machine has (not necessarily the one rendering the files)."""

    cores: int
    memory_gib: float


def this_machine() -> Machine:
    """Cores usable by this process and physical memory of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Machine(cores=usable_cores(), memory_gib=memory / 2**30)


def recommend_workers(machine: Machine, instances: int = 1, model_gib: float = MODEL_GIB) -> int:
    """Workers per instance: min(cores, (memory - reserve) / model) over all instances, >= 1."""
    by_memory = math.floor((machine.memory_gib - RESERVED_GIB) / model_gib)
    total = max(1, min(machine.cores, by_memory))
    return max(1, total // max(1, instances))
