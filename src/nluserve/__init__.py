"""nluserve: Chinese NER and sentiment models served fast and safely to many tenants."""

import os

# onnxruntime 1.32 starts a telemetry thread when it is imported, which uploads usage events
# to Microsoft unless this is set. A server should not call out on its own, and the thread
# breaks forking: gunicorn workers forked after the models are loaded before the fork have
# the thread's object but not the thread, and at exit its destructor aborts (SIGABRT) or
# hangs. Set before anything here imports onnxruntime; an operator's own value wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from nluserve.runtime.model import Model, load_model
from nluserve.runtime.results import ClassResult, Entity, NerResult

__all__ = ["ClassResult", "Entity", "Model", "NerResult", "load_model"]
__version__ = "0.1.0"
