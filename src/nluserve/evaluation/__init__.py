"""Scoring predictions against gold labels."""
