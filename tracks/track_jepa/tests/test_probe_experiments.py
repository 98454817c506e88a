"""Linear probes read what is linearly there; the experiment command writes its table and plots."""

import json

import numpy as np
import pytest
import torch

from track_jepa import (
    MAE,
    MAEConfig,
    Supervised,
    ViTConfig,
    linear_probe,
    mae_loss,
    supervised_loss,
)
from track_jepa.baselines import train_mae
from track_jepa.experiments import main
from track_jepa.probe import project_2d

pytestmark = pytest.mark.stretch


def test_probe_reads_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    good = np.eye(5)[y] + 0.1 * rng.normal(size=(600, 5))
    noise = rng.normal(size=(600, 5))
    assert linear_probe(good[:400], y[:400], good[400:], y[400:]) == 1.0
    assert linear_probe(noise[:400], y[:400], noise[400:], y[400:]) < 0.35   # chance is 0.2


def test_pca_projection_equals_sklearn_up_to_sign():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    x = np.random.default_rng(1).normal(size=(50, 6)) * np.arange(1, 7)
    ref = PCA(2).fit_transform(StandardScaler().fit_transform(x))
    got = project_2d(x, "pca")
    np.testing.assert_allclose(np.abs(got), np.abs(ref), atol=1e-8)


def test_mae_loss_falls_and_supervised_loss_is_cross_entropy(digits):
    x, y = digits
    torch.manual_seed(0)
    model = MAE(MAEConfig(ViTConfig.preset("test"), dec_dim=16, dec_depth=1))
    h = train_mae(model, x[:256], y[:256], steps=30, batch_size=32, progress=False).history
    assert sum(h[-5:]) / 5 < sum(h[:5]) / 5
    torch.manual_seed(0)
    assert torch.isfinite(mae_loss(model, (x[:4], torch.tensor(y[:4])))[0])
    sup = Supervised(ViTConfig.preset("test"), 10)
    labels = torch.tensor(y[:8])
    loss, m = supervised_loss(sup, (x[:8], labels))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(sup(x[:8]), labels))


def test_experiment_command_writes_table_json_and_plots(tmp_path):
    res = main(["--preset", "tiny", "--out", str(tmp_path), "--steps", "4", "--skip-text",
                "--no-progress"])
    md = (tmp_path / "results.md").read_text()
    assert "| digits" in md and "ijepa" in md and "supervised" in md
    data = json.loads((tmp_path / "results.json").read_text())
    accs = {m: s["acc"] for m, s in data["images"][0]["methods"].items()}
    assert set(accs) == {"random", "ijepa", "mae", "supervised"}
    assert all(0.1 < a <= 1.0 for a in accs.values())
    assert (tmp_path / "embeddings_digits.png").stat().st_size > 1000
    assert (tmp_path / "loss_digits.png").stat().st_size > 1000
    assert res["images"][0]["n_test"] == 450
