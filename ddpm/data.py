"""Datasets: Fashion-MNIST from its idx files, any folder of images, or a torch Dataset.

Images are float tensors (C, H, W) in [0, 1]; GaussianDiffusion maps them to [-1, 1].
Small data sets are held in memory as one tensor, so a batch is a single indexing operation.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format: big-endian header, then raw uint8), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"no {stem}[.gz] in {root}; install Debian's dataset-fashion-mnist "
                            f"or set FASHION_MNIST_DIR")


def load_fashion_mnist(root: str | Path | None = None, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, 28, 28) uint8, labels (N,) long) for split "train" (60k) or "test" (10k)."""
    root = Path(root or FASHION_MNIST_DIR)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def is_fashion_mnist_dir(path: str | Path) -> bool:
    try:
        _find(Path(path), "train-images-idx3-ubyte")
        return True
    except FileNotFoundError:
        return False


class TensorImageDataset(Dataset):
    """Images (N, C, H, W) in [0, 1] and optional labels (N,), held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, classes: list[str] | None = None):
        self.images = images if images.is_floating_point() else images.float() / 255.0
        self.labels, self.classes = labels, classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i] if self.labels is None else (self.images[i], self.labels[i])

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.images[idx], (self.labels[idx] if self.labels is not None else None)


def image_to_tensor(img, image_size: int | None, channels: int) -> torch.Tensor:
    """A PIL image of any mode/size -> (channels, size, size) float in [0, 1] (centre crop, then resize)."""
    from PIL import Image
    img = img.convert("L" if channels == 1 else "RGB")
    if image_size:
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        img = img.resize((image_size, image_size), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


def load_image_folder(folder: str | Path, image_size: int, channels: int = 1) -> TensorImageDataset:
    """Every image file under `folder` (recursively), converted to the model's size and channels."""
    from PIL import Image
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {folder}")
    images = []
    for p in files:
        with Image.open(p) as img:
            images.append(image_to_tensor(img, image_size, channels))
    return TensorImageDataset(torch.stack(images))


def resolve_dataset(folder_or_dataset, image_size: int = 28, channels: int = 1) -> Dataset:
    """What `Trainer(folder_or_dataset=...)` accepts: "fashion-mnist", a folder with its idx files,
    a folder of images, or any torch Dataset (items: image, or (image, label))."""
    if isinstance(folder_or_dataset, Dataset):
        return folder_or_dataset
    path = str(folder_or_dataset)
    if path == "fashion-mnist" or is_fashion_mnist_dir(path):
        images, labels = load_fashion_mnist(None if path == "fashion-mnist" else path)
        return TensorImageDataset(images, labels, FASHION_MNIST_CLASSES)
    return load_image_folder(path, image_size, channels)


def get_batch(dataset: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch (x, labels or None) from any dataset; fast path for in-memory ones."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(idx)
    items = [dataset[int(i)] for i in idx]
    if isinstance(items[0], (tuple, list)):
        return torch.stack([torch.as_tensor(a) for a, _ in items]), torch.as_tensor([int(b) for _, b in items])
    return torch.stack([torch.as_tensor(a) for a in items]), None
