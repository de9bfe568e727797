import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from nnbias.errors import NNBiasError
from nnbias.tasks.datasets import boolean_target, boolean_task, digits, mnist1d, sparse_parity, teacher_task
from nnbias.tasks.loaders import load_cifar10, load_mnist, load_npz, read_idx


def test_boolean_targets():
    assert boolean_target(3, "parity") == "01101001"
    assert boolean_target(3, "majority") == "00010111"
    table = boolean_target(6, "random:0.5", seed=1)
    def h(p):
        return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))

    p = table.count("1") / 64
    assert h(p) >= 0.5 > h(p - 1 / 64)  # the fewest ones that reach the entropy
    task = boolean_task(5, "parity", train=20)
    assert len(task.y_train) == 20 and len(task.y_test) == 12
    assert all(int(x.sum()) % 2 == int(y) for x, y in zip(task.x_train, task.y_train, strict=True))
    with pytest.raises(NNBiasError, match="target='0101'"):
        boolean_target(3, "0101")
    with pytest.raises(NNBiasError, match=r"^train=8 is not allowed; expected a whole number >= 1 and <= 7"):
        boolean_task(3, "parity", train=8, test=4)  # all 8 inputs to train on: none left to test
    # the target's random ones and the train/test split are independent draws: a
    # balanced random target must give a training set with both labels in it
    for seed in range(5):
        balanced = boolean_task(7, "random:1.0", train=32, seed=seed)
        assert 8 <= int(balanced.y_train.sum()) <= 24


def test_teacher_and_parity_tasks():
    lin = teacher_task("linear", d=10, train=50, test=20, seed=3)
    w = torch.linalg.lstsq(lin.x_train, lin.y_train.unsqueeze(1)).solution
    assert torch.allclose(lin.x_test @ w, lin.y_test.unsqueeze(1), atol=1e-8)  # exactly linear
    multi = teacher_task("multi-index", d=10, k=3, link="tanh", train=30, test=10)
    assert multi.x_train.shape == (30, 10) and multi.classes == 0
    par = sparse_parity(d=12, k=3, train=200, test=100, seed=4)
    # exactly 3 coordinates determine the label: find them by brute force
    x = torch.cat([par.x_train, par.x_test])
    y = torch.cat([par.y_train, par.y_test])
    from itertools import combinations
    hits = [s for s in combinations(range(12), 3) if ((x[:, list(s)].prod(1) > 0).long() == y).all()]
    assert len(hits) == 1


def test_packaged_real_data():
    two = digits((3, 5), train=100)
    assert two.classes == 2 and two.dim == 64 and 0 <= float(two.x_train.max()) <= 1
    assert len(two.y_train) + len(two.y_test) == 365  # 183 threes + 182 fives
    state = np.random.get_state()[1].copy()
    m = mnist1d(train=500)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert m.x_train.shape == (500, 40) and m.x_test.shape == (1000, 40) and m.classes == 10
    pair = mnist1d(train=300, classes=(2, 7))
    assert pair.classes == 2 and len(pair.y_train) == 300
    # the kept test examples are exactly the 2s and 7s of the ten-class test set, relabelled 0/1
    assert torch.equal(pair.x_test, m.x_test[(m.y_test == 2) | (m.y_test == 7)])
    assert torch.equal(pair.y_test, (m.y_test[(m.y_test == 2) | (m.y_test == 7)] == 7).long())


def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_mnist_idx_loader(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=30, dtype=np.uint8)
    write_idx(tmp_path / "img.idx.gz", images, gz=True)
    write_idx(tmp_path / "lab.idx", labels)
    assert np.array_equal(read_idx(tmp_path / "img.idx.gz"), images)
    data = load_mnist(tmp_path / "img.idx.gz", tmp_path / "lab.idx", train=20)
    assert data.x_train.shape == (20, 16) and float(data.x_train.max()) <= 1.0
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(NNBiasError, match="bad magic"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes((tmp_path / "lab.idx").read_bytes()[:-3])
    with pytest.raises(NNBiasError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    with pytest.raises(NNBiasError, match="does not exist"):
        read_idx(tmp_path / "missing.idx")
    write_idx(tmp_path / "lab29.idx", labels[:29])
    with pytest.raises(NNBiasError, match="30 inputs but 29 labels"):
        load_mnist(tmp_path / "img.idx.gz", tmp_path / "lab29.idx", train=20)
    write_idx(tmp_path / "lab_big.idx", np.full(30, 12, np.uint8))
    with pytest.raises(NNBiasError, match="allowed 0..9"):
        load_mnist(tmp_path / "img.idx.gz", tmp_path / "lab_big.idx", train=20)


def test_cifar_and_npz_loaders(tmp_path):
    rng = np.random.default_rng(1)
    batch = {b"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), b"labels": list(range(10)) + [0, 1]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    data = load_cifar10([tmp_path / "data_batch_1"], train=8)
    assert data.x_train.shape == (8, 3072)
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(NNBiasError, match="not a CIFAR-10 python batch"):
        load_cifar10([tmp_path / "junk"], train=8)
    np.savez(tmp_path / "ok.npz", x=rng.normal(size=(10, 3)), y=rng.normal(size=10))
    reg = load_npz(tmp_path / "ok.npz", train=6)
    assert reg.classes == 0 and reg.x_test.shape == (4, 3)
    np.savez(tmp_path / "nan.npz", x=np.full((10, 3), np.nan), y=np.zeros(10))
    with pytest.raises(NNBiasError, match="NaN or inf"):
        load_npz(tmp_path / "nan.npz", train=6)
    with pytest.raises(NNBiasError, match=r"no array\(s\) \['inputs'\]"):
        load_npz(tmp_path / "ok.npz", train=6, x_key="inputs")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(NNBiasError, match="not a readable .npz"):
        load_npz(tmp_path / "broken.npz", train=6)
