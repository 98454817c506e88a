"""Shared fixtures: the digits (shipped by scikit-learn) and a tiny I-JEPA batch."""

import random

import pytest
import torch

from track_jepa import IJEPA, IJEPAConfig, MaskCollator, load_digits_images


@pytest.fixture(scope="session")
def digits():
    return load_digits_images()


@pytest.fixture
def tiny_batch(digits):
    """(model, batch) for the "test" preset: 8 digits, their context and target indices."""
    torch.manual_seed(0)
    model = IJEPA(IJEPAConfig.preset("test"))
    x, y = digits
    col = MaskCollator(model.config.vit.grid, model.config.mask, seed=0)
    col.rng = random.Random(0)
    return model, col([(x[i], int(y[i])) for i in range(8)])
