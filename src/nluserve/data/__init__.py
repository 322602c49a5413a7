"""Readers for the corpus formats nluserve trains and evaluates on."""
