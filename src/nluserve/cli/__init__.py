"""The ``nluserve`` command."""
