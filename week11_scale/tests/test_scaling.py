"""week11 scaling laws: the power-law fitter against known laws (core), the smoke sweep and the
CLI end to end on pydocs, and the committed CPU fit against its own points (stretch)."""

import json
import math

import numpy as np
import pytest
import torch

from week04_modern_arch_tools import Llama
from week11_scale.scaling import (
    FIT_PATH,
    SCALING_PRESETS,
    LossFit,
    ScalingConfig,
    count_for_fit,
    fit_power_law,
    load_fit,
    load_points,
    main,
    model_config,
    sweep,
)

N = np.geomspace(2e3, 2e5, 7)          # the CPU sweep's span of sizes


# ----------------------------------------------------------------------------- the fitter


@pytest.mark.core
@pytest.mark.parametrize("E, A, alpha", [(1.8, 25.0, 0.3), (0.0, 8.0, 0.1), (2.0, 406.4, 0.34),
                                         (3.0, 40.0, 0.5)])
def test_fit_recovers_an_exact_law(E, A, alpha):
    fit = fit_power_law(N, E + A * N ** -alpha)
    assert fit.E == pytest.approx(E, abs=1e-4)
    assert fit.A == pytest.approx(A, rel=1e-3)
    assert fit.alpha == pytest.approx(alpha, rel=1e-4)
    assert (fit.n_min, fit.n_max, fit.n_points, fit.n_kind) == (N[0], N[-1], 7, "non_embedding")


@pytest.mark.core
def test_fit_recovers_a_law_through_noise():
    """0.2% multiplicative noise (a seed's spread on this CPU): alpha within 0.03 of the truth
    and the fitted curve within 0.5% of the true law over the range and 3x beyond it."""
    E, A, alpha = 1.8, 25.0, 0.3
    rng = np.random.default_rng(0)
    loss = (E + A * N ** -alpha) * (1 + 0.002 * rng.standard_normal(N.size))
    fit = fit_power_law(N, loss)
    assert abs(fit.alpha - alpha) < 0.03
    assert abs(fit.E - E) < 0.15 and fit.E >= 0
    grid = np.geomspace(N[0], 3 * N[-1], 50)
    truth = E + A * grid ** -alpha
    assert np.max(np.abs(fit.predict(grid) / truth - 1)) < 0.005


@pytest.mark.core
def test_fit_round_trips_through_json():
    fit = fit_power_law(N, 1.5 + 30 * N ** -0.25, source={"preset": "test"})
    back = LossFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert back == fit
    assert back.predict(1e4) == pytest.approx(1.5 + 30 * 1e4 ** -0.25, rel=1e-4)
    with pytest.raises(ValueError, match="parameter counts must be > 0"):
        fit.predict(0)


@pytest.mark.core
@pytest.mark.parametrize("n, loss, message", [
    ([1e3, 1e4], [3.0, 2.5], "at least 3 points"),
    ([0.0, 1e3, 1e4], [3.0, 2.5, 2.2], "parameter counts must be finite and > 0"),
    ([-5.0, 1e3, 1e4], [3.0, 2.5, 2.2], "parameter counts must be finite and > 0"),
    ([1e3, 1e4, 1e5], [3.0, float("nan"), 2.2], "losses must be finite and > 0"),
    ([1e3, 1e3, 1e4], [3.0, 2.9, 2.2], "3 distinct parameter counts"),
    ([1e3, 1e4, 1e5], [2.0, 2.5, 3.0], "does not fall with N"),
])
def test_fit_refuses_bad_points(n, loss, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(n, loss)


@pytest.mark.core
@pytest.mark.parametrize("shape", [(1, 16), (2, 48), (4, 64)])
def test_count_for_fit_is_the_model_without_embedding_and_head(shape):
    cfg = model_config(SCALING_PRESETS["cpu"], shape, vocab_size=512)
    model = Llama(cfg)
    skipped = model.tok_emb.weight.numel() + model.lm_head.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    assert count_for_fit(cfg) == count_for_fit(model) == total - skipped
    assert cfg.num_params() == total


@pytest.mark.core
def test_config_and_cli_refuse_bad_input(capsys, tmp_path):
    with pytest.raises(ValueError, match="at least 3 shapes"):
        ScalingConfig(shapes=((1, 16), (2, 32)))
    with pytest.raises(ValueError, match="multiple of head_dim=16"):
        ScalingConfig(shapes=((1, 16), (1, 24), (2, 32)))
    assert main(["--preset", "huge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown preset 'huge'; valid: smoke, cpu"
    assert load_fit(tmp_path / "missing.json") is None


# ----------------------------------------------------------------------------- the sweep


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs root whose data/ holds pydocs tokenized at the smoke vocab (about 4 s, once)."""
    from week03_training.train import ensure_data
    root = tmp_path_factory.mktemp("runs")
    ensure_data("pydocs", SCALING_PRESETS["smoke"].vocab_size, cache=root / "data",
                progress=False)
    return root


@pytest.mark.stretch
def test_smoke_sweep_end_to_end(runs, tmp_path):
    cfg = SCALING_PRESETS["smoke"]
    threads = torch.get_num_threads()
    points = sweep(cfg, tmp_path / "out", progress=False, data_cache=runs / "data")
    assert torch.get_num_threads() == threads             # restored after the sweep
    assert len(points) == 5
    sizes = [p.n_params_nonembed for p in points]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] > 10
    for p in points:
        model = Llama(model_config(cfg, (p.n_layer, p.n_embd), 512))
        assert p.n_params == sum(q.numel() for q in model.parameters())
        assert p.tokens == p.steps * cfg.batch_size * cfg.block_size
        assert p.tokens >= cfg.tokens_per_param * p.n_params_nonembed
        assert math.isfinite(p.val_loss) and math.isfinite(p.train_loss)
        assert p.val_loss < math.log(512)                    # learned something over uniform
    # the loosest honest claim at smoke size: the largest model beats the smallest
    # (seed 0 gives 4.60 against 6.23 nats; the gap is far above a seed's spread)
    assert points[-1].val_loss < points[0].val_loss
    saved = json.loads((tmp_path / "out" / "points.json").read_text())
    assert saved["points"] == [p.__dict__ for p in points]
    assert saved["config"]["shapes"] == [list(s) for s in cfg.shapes]


@pytest.mark.stretch
def test_cli_smoke_writes_points_fit_and_plot(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOCHAT_RUNS", str(runs))         # reuse the tokenized pydocs
    before = FIT_PATH.read_bytes() if FIT_PATH.is_file() else None
    out = tmp_path / "scaling"
    assert main(["--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "fit: L(N) =" in printed and "Chinchilla alpha = 0.34" in printed
    fit = load_fit(out / "fit.json")
    points = load_points(out / "points.json")
    assert len(points) == 5 and fit.n_points == 5 and fit.source["preset"] == "smoke"
    refit = fit_power_law([p.n_params_nonembed for p in points], [p.val_loss for p in points])
    assert (refit.E, refit.A, refit.alpha) == pytest.approx((fit.E, fit.A, fit.alpha))
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (FIT_PATH.read_bytes() if FIT_PATH.is_file() else None) == before   # no --save-fit


# ----------------------------------------------------------------------------- the committed fit


@pytest.mark.stretch
def test_committed_fit_is_what_the_cpu_sweep_gave():
    fit = load_fit()
    assert fit is not None, f"{FIT_PATH} is missing: run the cpu sweep with --save-fit"
    points = load_points()
    assert fit.source["preset"] == "cpu" and fit.n_kind == "non_embedding"
    assert fit.alpha > 0 and fit.E >= 0 and fit.n_points == len(points) >= 5
    n = np.array([p.n_params_nonembed for p in points], dtype=float)
    loss = np.array([p.val_loss for p in points])
    assert (fit.n_min, fit.n_max) == (n.min(), n.max())
    assert np.max(np.abs(fit.predict(n) / loss - 1)) < 0.03
    refit = fit_power_law(n, loss)
    assert (refit.E, refit.A, refit.alpha) == pytest.approx((fit.E, fit.A, fit.alpha), rel=1e-6)
    cpu = SCALING_PRESETS["cpu"]
    for p in points:       # every size trained its own 20-tokens-per-parameter budget
        assert p.tokens_per_param == cpu.tokens_per_param
        assert p.tokens >= cpu.tokens_per_param * p.n_params_nonembed
