"""The parameter-function map, sampled: which Boolean function does each random network compute?

A *chunk* is the unit of work, of seeding and of resumption: chunk i of a run
draws from a generator seeded by (run seed, i) alone, so its result does not
depend on which worker ran it, in what order, or whether the run was
interrupted before. Within a chunk, networks are drawn and evaluated in
batches of ``batch`` (K networks at once, never a Python loop over networks),
their outputs packed into truth tables and counted, so a chunk returns only
its distinct functions and their counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnbias.engines.ensemble import sample_ensemble
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import check_n_bits, hypercube

DEFAULT_BATCH = 256  # networks per batched computation: the working set stays in L2 (fastest measured)


def chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit seed for chunk ``chunk`` of a run with seed ``seed`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, chunk]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclass
class FunctionCounts:
    """Distinct packed truth tables (rows of bytes) and how often each was seen."""

    tables: np.ndarray  # (U, bytes_per_table) uint8
    counts: np.ndarray  # (U,) int64

    @staticmethod
    def from_packed(packed: np.ndarray) -> FunctionCounts:
        rows = np.ascontiguousarray(packed)
        keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
        uniq, counts = np.unique(keys, return_counts=True)
        tables = uniq.view(np.uint8).reshape(len(uniq), rows.shape[1])
        return FunctionCounts(tables, counts.astype(np.int64))

    @staticmethod
    def merge(parts: list[FunctionCounts]) -> FunctionCounts:
        tables = np.concatenate([p.tables for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        keys = np.ascontiguousarray(tables).view(np.dtype((np.void, tables.shape[1]))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=counts, minlength=len(uniq)).astype(np.int64)
        return FunctionCounts(uniq.view(np.uint8).reshape(len(uniq), tables.shape[1]), summed)


def truth_tables(spec: NetworkSpec, k: int, generator: torch.Generator,
                 batch: int = DEFAULT_BATCH) -> np.ndarray:
    """Packed truth tables (k, ceil(2**n / 8)) of k networks drawn from the prior."""
    n = check_n_bits(spec.input_dim)
    x = hypercube(n, spec.encoding).to(generator.device)
    out = []
    for start in range(0, k, batch):
        nets = sample_ensemble(spec, min(batch, k - start), generator)
        bits = (nets.forward(x) > 0).cpu().numpy()
        out.append(np.packbits(bits, axis=1))
    return np.concatenate(out) if out else np.zeros((0, (2**n + 7) // 8), np.uint8)


def sample_chunk(spec: NetworkSpec, seed: int, chunk: int, size: int,
                 device: str = "cpu", batch: int = DEFAULT_BATCH) -> FunctionCounts:
    """Counts of the functions computed by chunk ``chunk`` (``size`` networks) of a run."""
    generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, chunk))
    return FunctionCounts.from_packed(truth_tables(spec, size, generator, batch))
