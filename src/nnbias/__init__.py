"""nnbias: put the theories of why neural networks generalise to empirical test."""

__version__ = "0.1.0"
