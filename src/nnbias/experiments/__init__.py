"""Experiments: each wires engines, estimators and measures together for one claim."""
