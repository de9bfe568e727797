"""Measures: complexity of functions (and, later, feature movement, kernel distance)."""
