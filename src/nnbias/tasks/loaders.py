"""Loaders for data files a user already has (nnbias never downloads).

* MNIST-style IDX files (optionally gzipped): images + labels;
* CIFAR-10 "python version" batches (pickled dicts with ``data`` and ``labels``);
  only open files you trust: pickle runs code;
* ``.npz`` archives with an input and a label array.

Every problem (missing file, corrupt or truncated file, NaN/inf, mismatched
lengths, labels out of range) is one :class:`NNBiasError` naming the file.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from nnbias.errors import NNBiasError, require
from nnbias.tasks.datasets import Dataset, _rng, _split

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    require(path.is_file(), f"data file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise NNBiasError(f"data file {str(path)!r} is a corrupt gzip file ({e})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX array (the MNIST file format)."""
    raw = _read_bytes(path)
    require(len(raw) >= 4 and raw[:2] == b"\0\0" and raw[2] in IDX_TYPES,
            f"data file {str(path)!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    require(len(raw) >= 4 + 4 * ndim, f"data file {str(path)!r} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    require(len(body) == need, f"data file {str(path)!r} is truncated or padded: header says "
                               f"{need} bytes of data, found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def read_cifar10(paths: list[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated (images (N, 3072) uint8, labels (N,)) of CIFAR-10 python batches."""
    xs, ys = [], []
    for path in paths:
        try:
            batch = pickle.loads(_read_bytes(path), encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise NNBiasError(f"data file {str(path)!r} is not a CIFAR-10 python batch ({e})") from None
        require(isinstance(batch, dict) and b"data" in batch and b"labels" in batch,
                f"data file {str(path)!r} is not a CIFAR-10 python batch (no data/labels keys)")
        xs.append(np.asarray(batch[b"data"]))
        ys.append(np.asarray(batch[b"labels"]))
    return np.concatenate(xs), np.concatenate(ys)


def read_npz(path: str | Path, x_key: str = "x", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    require(path.is_file(), f"data file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in (x_key, y_key) if k not in archive.files]
            require(not missing, f"data file {str(path)!r} has no array(s) {missing}; "
                                 f"it has {archive.files}")
            return archive[x_key], archive[y_key]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise NNBiasError(f"data file {str(path)!r} is not a readable .npz archive ({e})") from None


def from_arrays(name: str, x: np.ndarray, y: np.ndarray, train: int, classes: int = 0,
                seed: int = 0, scale: float = 1.0) -> Dataset:
    """A Dataset from arrays: flattened, scaled, checked, split at random."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1) * scale
    y = np.asarray(y)
    require(len(x) == len(y), f"{name}: {len(x)} inputs but {len(y)} labels")
    require(bool(np.isfinite(x).all()), f"{name}: inputs contain NaN or inf")
    if classes:
        require(np.issubdtype(y.dtype, np.integer) or bool(np.all(y == np.round(y))),
                f"{name}: labels must be whole numbers for classification")
        y = y.astype(np.int64)
        require(int(y.min()) >= 0 and int(y.max()) < classes,
                f"{name}: labels range {int(y.min())}..{int(y.max())}; allowed 0..{classes - 1}")
    else:
        y = y.astype(np.float64)
        require(bool(np.isfinite(y).all()), f"{name}: targets contain NaN or inf")
    return _split(name, x, y, train, _rng(seed), classes)


def load_mnist(images: str | Path, labels: str | Path, train: int, seed: int = 0) -> Dataset:
    return from_arrays("mnist", read_idx(images), read_idx(labels), train, 10, seed, 1 / 255)


def load_cifar10(batches: list[str | Path], train: int, seed: int = 0) -> Dataset:
    x, y = read_cifar10(batches)
    return from_arrays("cifar10", x, y, train, 10, seed, 1 / 255)


def load_npz(path: str | Path, train: int, classes: int = 0, x_key: str = "x", y_key: str = "y",
             seed: int = 0) -> Dataset:
    x, y = read_npz(path, x_key, y_key)
    return from_arrays(Path(path).stem, x, y, train, classes, seed)

