"""Generators for the templated patches of the series (one module per template)."""
