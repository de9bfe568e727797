"""nnbias: put the theories of why neural networks generalise to empirical test."""

import os

# Back each CPU tensor of 2 MiB or more with transparent huge pages (where the kernel allows them on
# request): a paper-scale cell frees and allocates tensors of hundreds of MiB, each a fresh mmap that
# the kernel zero-fills 4 KiB at a time on first touch (400 million page faults, 45 % of a 31-minute
# posterior cell). torch reads the variable once, at its first allocation, so it is set here, before
# any nnbias module imports torch; a value the user set is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
