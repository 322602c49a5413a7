"""nluserve: Chinese NER and sentiment models served fast and safely to many tenants."""

from nluserve.runtime.model import Model, load_model
from nluserve.runtime.results import ClassResult, Entity, NerResult

__all__ = ["ClassResult", "Entity", "Model", "NerResult", "load_model"]
__version__ = "0.1.0"
