"""Estimators: turn counts into probabilities with honest error bars."""
