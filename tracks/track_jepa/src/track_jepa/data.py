"""Images that ship inside installed packages: nothing downloads at run time.

- ``load_digits_images``: scikit-learn's ``load_digits`` (1,797 handwritten digits,
  8x8, 17 grey levels, 10 classes), scaled to [0, 1], shape (N, 1, 8, 8).
- ``load_animal_mnist``: Animal-MNIST (10,000 animal silhouettes, 28x28, 10 classes)
  from the wheel of the PyPI package ``animal-mnist``, when it is installed. Install
  it with ``pip install --no-deps animal-mnist`` (its declared dependencies include
  TensorFlow, which only its MNIST helpers use). The arrays are gzipped pickles; they
  are read with an unpickler that admits only numpy's array constructors, and the
  package itself is never imported.
- ``split``: a stratified train / held-out split (scikit-learn).

Both loaders return pixels standardised over the whole set (mean 0, std 1), the
usual per-channel normalisation of ViT inputs; ``standardize`` does it.

Left out: augmentation (I-JEPA's recipe uses only crops; these images are too small).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

__all__ = ["standardize", "load_digits_images", "load_animal_mnist", "animal_mnist_path", "split"]

# ---------------------------------------------------------------------------


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Pixels shifted and scaled to mean 0, std 1 over the whole tensor."""
    return (x - x.mean()) / x.std()


def load_digits_images() -> tuple[torch.Tensor, np.ndarray]:
    """(images (1797, 1, 8, 8) float32, standardised, labels (1797,) int64)."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    return standardize(x), d.target.astype(np.int64)


def animal_mnist_path() -> Path | None:
    """The folder of Animal-MNIST's data files, or None when the package is not installed."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    return folder if (folder / "animal_data_version_3.gz").exists() else None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (no arbitrary callables)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy") and name == "_reconstruct":
            from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def _load_array(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.asarray(_ArraysOnly(f).load())


def load_animal_mnist(limit: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """(images (N, 1, 28, 28) float32, standardised, labels (N,) int64); FileNotFoundError when
    ``animal-mnist`` is not installed."""
    folder = animal_mnist_path()
    if folder is None:
        raise FileNotFoundError("Animal-MNIST is not installed: pip install --no-deps animal-mnist")
    x = _load_array(folder / "animal_data_version_3.gz").astype(np.float32)
    y = _load_array(folder / "animal_label_version_3.gz").astype(np.int64).reshape(-1)
    x = x.reshape(len(x), 1, 28, 28)
    x = x / max(float(x.max()), 1.0)
    if limit is not None:
        keep = np.random.default_rng(0).permutation(len(x))[:limit]
        x, y = x[keep], y[keep]
    return standardize(torch.from_numpy(np.ascontiguousarray(x))), y


def split(images: torch.Tensor, labels: np.ndarray, test_size: float = 0.25, seed: int = 0):
    """Stratified (train_x, test_x, train_y, test_y)."""
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    return images[tr], images[te], labels[tr], labels[te]
