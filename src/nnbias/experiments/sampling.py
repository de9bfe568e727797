"""Resumable sampling runs of the parameter-function map, stored in the results store.

Shared by every experiment that needs P(f): the main pfmap run, the theorem
check's variants and the exact-volume comparison are all such runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from nnbias.engines.memory import check_fits
from nnbias.engines.rng import STREAM
from nnbias.engines.sampler import (
    DEFAULT_BATCH,
    FUSED_KERNEL,
    TORCH_PASS,
    FunctionCounts,
    sample_chunk,
    sampler_path,
)
from nnbias.errors import NNBiasError, check_device, check_int, check_seed
from nnbias.executor import LocalExecutor, chunk_count, chunk_length, run_chunks
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import check_n_bits, packed_to_strings

DEFAULT_CHUNK = 2**16


FLOAT32_HEADROOM = 1e30  # sigma_w^(layers) * sigma_b must stay this far below float32's 3.4e38
MAX_SAMPLES = 10**12  # 100x the papers' largest (10^10), days at a million networks/s


@dataclass(frozen=True)
class SamplingConfig:
    """What a sampling run is: the same config (and seed) always gives the same counts."""

    spec: NetworkSpec
    samples: int
    seed: int = 0
    chunk_size: int = DEFAULT_CHUNK
    batch: int | None = None  # default: DEFAULT_BATCH on CPU, a whole chunk on a GPU
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.batch is None:
            object.__setattr__(self, "batch", DEFAULT_BATCH if self.device == "cpu" else self.chunk_size)
        check_n_bits(self.spec.input_dim)
        object.__setattr__(self, "samples", check_int("samples", self.samples, minimum=1,
                                                      maximum=MAX_SAMPLES))
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "chunk_size", check_int("chunk_size", self.chunk_size, minimum=1))
        object.__setattr__(self, "batch", check_int("batch", self.batch, minimum=1))
        chunk_count("samples", self.samples, self.chunk_size)
        check_device(self.device)
        # one batch of networks must fit before a run is written: on a GPU's torch path also their outputs
        # on every input, which the compiled CPU loop never holds; the fused kernel holds a chunk's tables
        if sampler_path(self.spec, self.device) == FUSED_KERNEL:
            k, per_net = min(self.chunk_size, self.samples), 2 * -(-2**self.spec.input_dim // 64)
        else:
            k = min(self.batch, self.chunk_size, self.samples)
            outputs = (self.device != "cpu") * 2**self.spec.input_dim * sum(self.spec.hidden)
            per_net = self.spec.n_params + outputs
        check_fits(k, per_net, torch.float32, self.device, self.spec.describe())
        # the sampler computes in float32: an output scale near its range (3.4e38) overflows silently
        scale = max(self.spec.sigma_w, 1.0) ** (len(self.spec.hidden) + 1) * max(self.spec.sigma_b, 1.0)
        if scale > FLOAT32_HEADROOM:
            raise NNBiasError(f"sigma_w={self.spec.sigma_w:g}, sigma_b={self.spec.sigma_b:g} are not allowed "
                              f"for {len(self.spec.hidden)} hidden layers: the sampler's float32 "
                              f"activations would reach ~{scale:.1e} (allowed up to {FLOAT32_HEADROOM:.0e})")

    @property
    def n_chunks(self) -> int:
        return chunk_count("samples", self.samples, self.chunk_size)

    def to_dict(self) -> dict[str, Any]:
        # networks without the fused kernel take torch's normal_ on a GPU, which fills in blocks, so
        # how draws map to networks depends on the batch size there, and that stream is not the CPU's:
        # all are part of what a run is.
        torch_pass = sampler_path(self.spec, self.device) == TORCH_PASS
        return {"spec": self.spec.to_dict(), "samples": self.samples, "seed": self.seed,
                "chunk_size": self.chunk_size, "batch": self.batch, "device": self.device,
                "stream": "torch" if torch_pass else STREAM}


def _chunk_task(config: SamplingConfig, chunk: int) -> FunctionCounts:
    size = chunk_length(config.samples, config.chunk_size, chunk)
    return sample_chunk(config.spec, config.seed, chunk, size, device=config.device, batch=config.batch)


def run_sampling(store: Store, config: SamplingConfig, executor=None, experiment: str = "pfmap",
                 quiet: bool = False) -> str:
    """Sample (or finish sampling) the run for ``config``; return its run id.

    Chunks already marked done in the store are skipped, so calling this again
    after a crash or Ctrl-C finishes the run without redoing or double-counting.
    """
    run_id = store.start_run(experiment, config.to_dict(), config.seed, executor)
    done = store.done_chunks(run_id)
    todo = [c for c in range(config.n_chunks) if c not in done]
    n = config.spec.input_dim

    def commit(chunk: int, result: FunctionCounts) -> None:
        store.commit_function_chunk(run_id, chunk, n, packed_to_strings(result.tables, n),
                                    result.counts)

    run_chunks(executor or LocalExecutor(), functools.partial(_chunk_task, config), todo, commit,
               f"{experiment} {config.spec.describe()}", quiet=quiet)
    store.finish_run(run_id)
    return run_id
