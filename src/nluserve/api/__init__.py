"""HTTP layer: the only package that imports FastAPI."""

from nluserve.api.app import create_app

__all__ = ["create_app"]
