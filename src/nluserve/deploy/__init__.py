"""Deployment: rendered host configuration, its validation with the real tools, backups."""
