"""The parameter-function map, sampled: which Boolean function does each random network compute?

A *chunk* is the unit of work, of seeding and of resumption: chunk i of a run
draws from a generator seeded by (run seed, i) alone, so its result does not
depend on which worker ran it, in what order, or whether the run was
interrupted before. Within a chunk, networks are drawn and evaluated in
batches of ``batch`` (K networks at once, never a Python loop over networks),
their outputs packed into truth tables and counted, so a chunk returns only
its distinct functions and their counts.

Speed is designed around the random numbers: at the papers' sizes torch's
generator costs more than the matrix products, so on CPU the parameters come
from the counter-based stream of ``engines.rng`` (network i of a chunk owns a
fixed block of it), drawn straight into the bias-folded layout of
``FoldedNets`` with the prior's scale applied in the same pass; the truth
tables then come from ``engines.cube``'s compiled loop, one network at a
time (subset sums for the first layer, BLAS for the hidden products, signs
straight to bits for the readout). A GPU runs ``engines.fused``'s Triton
kernel, which computes the same stream's numbers on the chip, so it samples the
same networks; networks that kernel does not take (other activations, hidden
layers wider than 64, no Triton), and activations the CPU loop does not
compute, take torch's batched forward pass. On a GPU the tables are counted
there too (``FunctionCounts.from_words``), so only the distinct ones cross to
the host.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from nnbias.engines import fused
from nnbias.engines.blas import sgemm_address
from nnbias.engines.cube import FUSED_ACTIVATIONS, cube_signs
from nnbias.engines.ensemble import Ensemble, activation_fn, layer_scales
from nnbias.engines.memory import check_fits
from nnbias.engines.rng import fill_counter, pairs_for
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import check_n_bits, encoding_levels, hypercube

# networks per batched computation: 128-512 measured alike; 32 is slower with 2 workers (per-batch
# Python work holds the GIL)
DEFAULT_BATCH = 256
# networks per forward slice: keeps each product's operands in L2 (measured at K = 256: 5.2 us/net
# in slices of 32 against 6.6 us in one piece)
_SLICE = 32


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
    def from_signs(signs: torch.Tensor) -> FunctionCounts:
        """Counts of the rows of a (K, M) boolean tensor, packed and counted on its own device:
        the rows become the bytes of ``np.packbits`` (padded to whole int64 words) and
        ``torch.unique`` counts the words, so a GPU sends the host only the distinct tables
        (host-side packing and ``np.unique`` held the GPU sampler to ~3 % of its matmul peak)."""
        k, m = signs.shape
        bits = torch.nn.functional.pad(signs.to(torch.uint8), (0, -m % 64)).view(k, -1, 8)
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=signs.device)
        return FunctionCounts.from_words((bits * weights).sum(-1, dtype=torch.uint8).view(torch.int64), m)

    @staticmethod
    def from_words(words: torch.Tensor, m: int) -> FunctionCounts:
        """Counts of the rows of a (K, ceil(m / 64)) int64 tensor of truth tables of m bits, each row
        the bytes of ``np.packbits`` padded to whole words, counted on the tensor's device."""
        if words.shape[1] == 1:  # up to 64 inputs: one key per row, the faster 1-D unique
            uniq, counts = torch.unique(words[:, 0], return_counts=True)
        else:
            uniq, counts = torch.unique(words, dim=0, return_counts=True)
        tables = uniq.reshape(len(uniq), -1).cpu().view(torch.uint8).numpy()[:, :(m + 7) // 8]
        return FunctionCounts.merge([FunctionCounts(tables, counts.cpu().numpy().astype(np.int64))])

    @staticmethod
    def merge(parts: list[FunctionCounts]) -> FunctionCounts:
        tables = np.concatenate([p.tables for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        keys = np.ascontiguousarray(tables).view(np.dtype((np.void, tables.shape[1]))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=counts, minlength=len(uniq)).astype(np.int64)
        return FunctionCounts(uniq.view(np.uint8).reshape(len(uniq), tables.shape[1]), summed)


@dataclass(frozen=True)
class FoldedLayer:
    """Where one layer lives in the folded layout, and the prior's scale of each entry.

    Each layer of K networks is one (K, rows, cols) matrix: the bias is the last
    column, multiplied by a constant extra input, and a hidden layer has one
    extra row whose output is that constant for the next layer. Evaluating a
    layer is then one batched product with nothing to add (measured: bias
    folding saves a fourth of the 40x40 layer, and clamping into a padded
    buffer costs more than it saves).
    """

    rows: int
    cols: int
    scale: np.ndarray  # (rows * cols,) multiplier of each unit draw; 0 on the constant row
    constant: float  # pre-activation of the constant row's unit (its one nonzero entry), or 0 if none
    first_pair: int  # offset of this layer's draws in a network's block of the stream


@functools.cache
def folded_layers(spec: NetworkSpec) -> tuple[tuple[FoldedLayer, ...], int]:
    """The folded layout of ``spec`` and the stream pairs one network consumes.

    A hidden layer's constant unit outputs act(1) (nonzero for every activation
    here), so the next layer's bias column is scaled by 1/act(1).
    """
    act_one = _act_one(spec)
    carried = 1.0  # value of the constant input of the current layer
    layers, pairs = [], 0
    last = len(spec.layer_sizes) - 1
    for layer, ((fan_in, fan_out), (w_scale, b_scale)) in enumerate(
            zip(spec.layer_sizes, layer_scales(spec), strict=True)):
        bias = int(spec.bias)
        carry = bias and layer < last
        rows, cols = fan_out + carry, fan_in + bias
        scale = np.full((rows, cols), w_scale, np.float32)
        if bias:
            scale[:, fan_in] = b_scale / carried
        if carry:
            scale[fan_out] = 0.0
        layers.append(FoldedLayer(rows, cols, scale.ravel(), 1.0 / carried if carry else 0.0, pairs))
        pairs += pairs_for(rows * cols)
        carried = act_one
    return tuple(layers), pairs


@functools.cache
def _device_constants(spec: NetworkSpec, device: torch.device
                      ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Each folded layer's scale and the hypercube's inputs, on ``device``, made once per process: a
    copy from the host's pageable memory first waits for the device's queue to drain, so copies in
    every batch would leave a GPU idle while the host queues the next one."""
    scales = tuple(torch.from_numpy(layer.scale).to(device) for layer in folded_layers(spec)[0])
    return scales, hypercube(spec.input_dim, spec.encoding).to(device)


def _act_one(spec: NetworkSpec) -> float:
    return float(activation_fn(spec.activation)(torch.tensor(1.0)))


@dataclass
class FoldedNets:
    """K networks in the folded layout (see ``FoldedLayer``): what the sampler evaluates.

    ``reuse`` in ``draw`` and the ``outputs`` buffers of ``forward`` let one batch's
    memory serve the next: a fresh megabyte-sized tensor per batch is a fresh
    mmap whose page faults cost as much as the matrix products (measured 2.4x).
    """

    spec: NetworkSpec
    mats: list[torch.Tensor]  # per layer (K, rows, cols)
    outputs: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # per input count N

    @staticmethod
    def draw(spec: NetworkSpec, k: int, key: int, first_net: int = 0, device: str = "cpu",
             generator: torch.Generator | None = None, reuse: FoldedNets | None = None) -> FoldedNets:
        """Networks first_net .. first_net + k - 1 of the stream ``key`` (counter-based, on CPU), or
        k networks from ``generator`` (any device: torch's generator, for GPUs).
        ``reuse``: earlier networks of the same spec and k whose memory these overwrite (and return)."""
        layers, pairs = folded_layers(spec)
        if reuse is None or reuse.mats[0].shape[0] != k:
            check_fits(k, sum(lay.rows * lay.cols for lay in layers), torch.float32, device, spec.describe())
            reuse = FoldedNets(spec, [torch.empty(k, lay.rows, lay.cols, device=device) for lay in layers])
        scales = _device_constants(spec, reuse.mats[0].device)[0] if generator is not None else None
        for i, (layer, mat) in enumerate(zip(layers, reuse.mats, strict=True)):
            flat = mat.view(k, layer.rows * layer.cols)
            if generator is None:
                fill_counter(flat.numpy(), spec.prior, key, first_net * pairs + layer.first_pair, pairs,
                             layer.scale)
            else:
                (flat.normal_(generator=generator) if spec.prior == "gaussian"
                 else flat.uniform_(-1.0, 1.0, generator=generator))
                flat.mul_(scales[i])
            if layer.constant:
                mat[:, -1, -1] = layer.constant
        return reuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, N) of all K networks on the inputs x (N, input_dim): a view of a buffer
        that the next ``forward`` of these networks (or of a ``draw`` reusing them) overwrites."""
        act = activation_fn(self.spec.activation, inplace=True)
        first = self.mats[0]
        k, _, cols = first.shape
        if self.spec.bias:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
        outs = self._buffers(len(x))
        x_t = x.to(first.dtype).T.contiguous()
        for part in self._slices(len(x)):
            # the inputs are shared, so the first layer of all networks is one matrix product
            torch.mm(first[part].reshape(-1, cols), x_t, out=outs[0][part].view(-1, len(x)))
            for mat, inputs, out in zip(self.mats[1:], outs, outs[1:]):  # noqa: B905 (outs[1:] is shorter)
                torch.bmm(mat[part], act(inputs[part]), out=out[part])
        return outs[-1][:, 0, :]

    def cube_signs(self) -> torch.Tensor:
        """Signs (K, 2^n) of these networks' outputs on all 2^n inputs (in the order of ``hypercube``),
        on their device: the batched forward pass."""
        return self.forward(_device_constants(self.spec, self.mats[0].device)[1]) > 0

    def cube_tables(self) -> np.ndarray:
        """Packed truth tables (K, ceil(2^n / 8)) of these networks (CPU) on all 2^n inputs:
        ``np.packbits`` of ``cube_signs``, or, when the activation allows (``FUSED_ACTIVATIONS``),
        ``engines.cube``'s compiled loop, which gives the same tables (up to outputs within rounding
        of 0) about 1.5x faster."""
        spec = self.spec
        first = self.mats[0]
        if spec.activation not in FUSED_ACTIVATIONS:
            return np.packbits(self.cube_signs().numpy(), axis=1)
        lo, hi = encoding_levels(spec.encoding)
        packed = np.zeros((len(first), (2**spec.input_dim + 7) // 8), np.uint8)
        cube_signs(tuple(m.numpy() for m in self.mats), spec.input_dim, lo, hi,
                   FUSED_ACTIVATIONS.index(spec.activation), sgemm_address(), packed)
        return packed

    def _buffers(self, size: int) -> list[torch.Tensor]:
        """Each layer's output buffer (K, rows, size) for ``size`` inputs, kept for the next batch."""
        if size not in self.outputs:
            first = self.mats[0]
            check_fits(len(first), size * sum(m.shape[1] for m in self.mats), first.dtype, first.device,
                       f"{self.spec.describe()} on {size} inputs (every layer's outputs)")
            self.outputs[size] = [first.new_empty(len(first), m.shape[1], size) for m in self.mats]
        return self.outputs[size]

    def _slices(self, size: int) -> list[slice]:
        """Networks evaluated together: about _SLICE of them at 128 inputs, fewer at more inputs, to
        stay in a CPU core's cache; all of them on a GPU, where small launches would idle it."""
        if self.mats[0].device.type != "cpu":
            return [slice(None)]
        step = max(1, _SLICE * 128 // size)
        return [slice(a, min(a + step, len(self.mats[0]))) for a in range(0, len(self.mats[0]), step)]

    def as_ensemble(self) -> Ensemble:
        """The same networks as an ``Ensemble`` (for gradients, kernels, and to check ``forward``)."""
        weights, biases = [], []
        for mat, (fan_in, fan_out) in zip(self.mats, self.spec.layer_sizes, strict=True):
            weights.append(mat[:, :fan_out, :fan_in])
            biases.append(mat[:, :fan_out, fan_in] if self.spec.bias else None)
        bias_scales = [1.0] + [_act_one(self.spec)] * (len(weights) - 1)  # the constant input's value
        return Ensemble(self.spec, weights, biases, [1.0] * len(weights), bias_scales)


def truth_tables(spec: NetworkSpec, k: int, key: int, batch: int = DEFAULT_BATCH) -> np.ndarray:
    """Packed truth tables (k, ceil(2**n / 8)) of networks 0 .. k-1 of the counter stream ``key``
    (CPU): network i's parameters depend on (key, i) only, not on ``batch``."""
    n = check_n_bits(spec.input_dim)
    out, nets = [], None
    for start in range(0, k, batch):
        nets = FoldedNets.draw(spec, min(batch, k - start), key, start, reuse=nets)
        out.append(nets.cube_tables())
    return np.concatenate(out) if out else np.zeros((0, (2**n + 7) // 8), np.uint8)


def generator_counts(spec: NetworkSpec, k: int, key: int, device: str, batch: int) -> FunctionCounts:
    """Counts of the functions of k networks drawn from torch's generator on ``device`` seeded with
    ``key``, batch by batch, evaluated, packed and counted on the device (the GPU path; on the CPU
    it runs the same code, which is how the tests keep it alive)."""
    check_n_bits(spec.input_dim)
    generator = torch.Generator(device=device).manual_seed(key)
    signs, nets = [], None
    for start in range(0, k, batch):
        nets = FoldedNets.draw(spec, min(batch, k - start), key, start, device, generator, nets)
        signs.append(nets.cube_signs())  # a new tensor: the next batch does not overwrite it
    if not signs:
        return FunctionCounts(np.zeros((0, (2**spec.input_dim + 7) // 8), np.uint8), np.zeros(0, np.int64))
    return FunctionCounts.from_signs(torch.cat(signs))


COMPILED_LOOP, FUSED_KERNEL, TORCH_PASS = "compiled loop", "fused kernel", "torch's forward pass"


def sampler_path(spec: NetworkSpec, device: str) -> str:
    """The path ``sample_chunk`` takes for ``spec`` on ``device``: the compiled loop on the CPU; on a GPU
    ``engines.fused``'s kernel, or torch's forward pass for networks the kernel does not take (the only
    path whose networks are not the counter stream's)."""
    if device == "cpu":
        return COMPILED_LOOP
    return FUSED_KERNEL if fused.unsupported(spec) is None else TORCH_PASS


def sample_chunk(spec: NetworkSpec, seed: int, chunk: int, size: int,
                 device: str = "cpu", batch: int = DEFAULT_BATCH) -> FunctionCounts:
    """Counts of the functions computed by chunk ``chunk`` (``size`` networks) of a run, by
    ``sampler_path``: the counter stream and compiled loop on the CPU; on a GPU the same stream in
    ``engines.fused``'s kernel (the same networks), or ``generator_counts``."""
    key = chunk_seed(seed, chunk)
    path = sampler_path(spec, device)
    if path == COMPILED_LOOP:
        return FunctionCounts.from_packed(truth_tables(spec, size, key, batch))
    if path == FUSED_KERNEL:
        return FunctionCounts.from_words(fused.cube_words(spec, size, key, device), 2**spec.input_dim)
    return generator_counts(spec, size, key, device, batch)
