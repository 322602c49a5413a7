"""The audit log: who called what, when, off the hot path and never lost."""
