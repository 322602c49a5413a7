"""``app`` for ASGI servers started by hand: built from NLUSERVE_* environment settings."""

from nluserve.api.app import create_app

app = create_app()
