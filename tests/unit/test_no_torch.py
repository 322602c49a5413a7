"""Serving code must import with PyTorch unavailable (torch is the optional train extra)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys
for blocked in ("torch", "transformers", "jieba"):
    sys.modules[blocked] = None  # any import of it now raises ImportError
import nluserve
names = [m.name for m in pkgutil.walk_packages(nluserve.__path__, "nluserve.")
         if not m.name.startswith("nluserve.train") and not m.name.endswith(("__main__", "server.asgi"))]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_serving_module_imports_without_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 10
