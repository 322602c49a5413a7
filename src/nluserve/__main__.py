"""``python -m nluserve``."""

from nluserve.cli.app import main

main()
