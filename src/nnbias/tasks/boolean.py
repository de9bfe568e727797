"""The Boolean hypercube and truth tables.

Convention: input number i (0 <= i < 2**n) is the binary expansion of i with
the first coordinate most significant, so for n = 2 the inputs are 00, 01, 10,
11 in that order. A truth table is the string of outputs for inputs 0 .. 2**n-1
("0001" is AND). Packed truth tables are rows of bytes (numpy ``packbits``
order), which is what the sampler counts; bit strings are what users see.
"""

from __future__ import annotations

import numpy as np
import torch

from nnbias.errors import check_choice, check_int

MAX_BITS = 10  # 2**10 = 1024 inputs; beyond that P(f) estimation is hopeless anyway


def check_n_bits(n: int) -> int:
    return check_int("n (number of Boolean inputs)", n, minimum=1, maximum=MAX_BITS)


def encoding_levels(encoding: str) -> tuple[float, float]:
    """The values (bit 0, bit 1) of an input coordinate under ``encoding``."""
    check_choice("encoding", encoding, ("01", "pm1"))
    return (0.0, 1.0) if encoding == "01" else (-1.0, 1.0)


def hypercube(n: int, encoding: str = "01", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All 2**n inputs as a (2**n, n) tensor in the package's input order."""
    n = check_n_bits(n)
    lo, hi = encoding_levels(encoding)
    idx = torch.arange(2**n).unsqueeze(1)
    shifts = torch.arange(n - 1, -1, -1)
    bits = ((idx >> shifts) & 1).to(dtype)
    return (lo + (hi - lo) * bits).to(dtype)


def pack(outputs: np.ndarray) -> np.ndarray:
    """(K, 2**n) array of 0/1 outputs -> (K, ceil(2**n/8)) uint8 packed rows."""
    return np.packbits(np.asarray(outputs, dtype=bool), axis=1)


def packed_to_strings(packed: np.ndarray, n: int) -> list[str]:
    """Packed rows -> truth tables as '0'/'1' strings of length 2**n."""
    return packed_to_bit_strings(packed, 2**n)


def packed_to_bit_strings(packed: np.ndarray, length: int) -> list[str]:
    """Packed rows -> '0'/'1' strings of ``length`` bits (e.g. a function's labels on a test set)."""
    bits = np.unpackbits(packed, axis=1, count=length)
    chars = (bits + ord("0")).astype(np.uint8)
    return [row.tobytes().decode("ascii") for row in chars]


def sign_codes(outputs: torch.Tensor) -> np.ndarray:
    """(...,) the signs of each row of outputs (..., N) as a number: the function on those N inputs,
    the first input the most significant bit (as in a truth table's string)."""
    bits = (outputs > 0).long()
    powers = 2 ** torch.arange(outputs.shape[-1] - 1, -1, -1, device=bits.device)
    return (bits * powers).sum(-1).cpu().numpy()


def strings_to_bits(tables: list[str]) -> np.ndarray:
    """Truth-table strings of equal length -> (K, N) uint8 array of 0/1."""
    raw = np.frombuffer("".join(tables).encode("ascii"), dtype=np.uint8)
    return (raw - ord("0")).reshape(len(tables), -1)


def ones_count(tables: list[str]) -> np.ndarray:
    """T: the number of inputs mapped to 1, for each truth table."""
    return strings_to_bits(tables).sum(axis=1)
