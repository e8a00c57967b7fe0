"""ddpm/data.py: idx files, image folders of every mode, the Trainer's input forms."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    is_fashion_mnist_dir,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    resolve_dataset,
)


def _write_idx(path, arr, gz):
    data = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", imgs, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{sfx}"), imgs)
    assert is_fashion_mnist_dir(tmp_path)
    x, y = load_fashion_mnist(tmp_path)
    assert x.shape == (5, 1, 28, 28) and torch.equal(y, torch.arange(5))
    ds = resolve_dataset(str(tmp_path))
    assert ds.images.max() <= 1.0 and ds.classes == FASHION_MNIST_CLASSES


def test_not_an_idx_file(tmp_path):
    (tmp_path / "x").write_bytes(b"hello world, not idx")
    with pytest.raises(ValueError, match="not an idx"):
        read_idx(tmp_path / "x")


@pytest.mark.skipif(not is_fashion_mnist_dir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    x, y = load_fashion_mnist(split="test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))


def test_image_folder_of_every_mode(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (50, 50, 4), dtype=np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).convert("P").save(tmp_path / "pal.gif")
    Image.fromarray(rng.integers(0, 65535, (64, 32), dtype=np.uint16)).save(tmp_path / "deep.png")   # 16-bit
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(tmp_path / "sub" / "g.jpg")
    (tmp_path / "notes.txt").write_text("ignored")
    for ch in (1, 3):
        ds = load_image_folder(tmp_path, 28, ch)
        assert ds.images.shape == (5, ch, 28, 28)
        assert 0 <= ds.images.min() and ds.images.max() <= 1 and ds.labels is None


def test_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        load_image_folder(tmp_path, 28)


def test_plain_torch_dataset_passes_through():
    ds = torch.utils.data.TensorDataset(torch.rand(3, 1, 28, 28), torch.arange(3))
    from ddpm.data import get_batch
    x, y = get_batch(resolve_dataset(ds), torch.tensor([2, 0]))
    assert x.shape == (2, 1, 28, 28) and y.tolist() == [2, 0]
