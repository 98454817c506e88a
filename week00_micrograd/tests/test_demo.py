"""The two-moons demo, its command line, and the pictures."""

from __future__ import annotations

import math
import shutil

import pytest

from shared import MetricsLogger, read_metrics
from week00_micrograd import (
    TrainConfig,
    Value,
    draw_graph,
    example_graph,
    make_moons,
    to_dot,
    train_moons,
)
from week00_micrograd.train import main

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_make_moons_shape_labels_and_geometry():
    X, y = make_moons(100, noise=0.0, seed=3)
    assert len(X) == len(y) == 100 and all(len(p) == 2 for p in X)
    assert y.count(-1) == y.count(1) == 50
    for (px, py), label in zip(X, y):
        # noise 0: points lie exactly on their half circle
        cx, cy = (0.0, 0.0) if label == -1 else (1.0, 0.5)
        assert math.hypot(px - cx, py - cy) == pytest.approx(1.0)
        assert (py >= 0) if label == -1 else (py <= 0.5)
    assert make_moons(10, seed=1) == make_moons(10, seed=1)
    assert make_moons(10, seed=1) != make_moons(10, seed=2)


@pytest.mark.slow
def test_default_demo_config_reaches_95_percent(tmp_path):
    """The CLI's default run (100 points, 100 AdamW steps) must classify >= 95% correctly."""
    cfg = TrainConfig()
    with MetricsLogger(tmp_path / "run", tensorboard=False) as log:
        result = train_moons(cfg, log, progress=False)
    assert result.final_accuracy >= 0.95
    assert result.losses[-1] < result.losses[0] / 3
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == cfg.steps + 1
    assert rows[0]["step"] == 0 and {"loss", "accuracy", "lr"} <= rows[0].keys()
    assert rows[-1]["accuracy"] == result.final_accuracy


def test_cli_writes_run_folder_with_pngs(tmp_path, capsys):
    run_dir = main(["--steps", "3", "--samples", "20", "--seed", "1", "--out", str(tmp_path),
                    "--no-progress"])
    assert run_dir.parent == tmp_path and run_dir.name.startswith("week00-train-")
    for name in ("decision_boundary.png", "graph.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG_MAGIC
    assert (run_dir / "graph.dot").read_text().startswith("digraph G {")
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert "accuracy" in capsys.readouterr().out


def test_cli_help_and_bad_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--steps", "--seed", "--out"):
        assert flag in out
    with pytest.raises(SystemExit) as exc:
        main(["--steps", "0"])
    assert exc.value.code == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_to_dot_lists_every_node_and_edge():
    o = example_graph()
    order = o.topo()
    text = to_dot(o)
    assert text.count("shape=record") == len(order) == 10  # 5 leaves, 5 results
    op_nodes = [v for v in order if v._op]
    assert text.count("shape=ellipse") == len(op_nodes)
    n_edges = sum(len(v._prev) + 1 for v in op_nodes)  # inputs -> op, op -> result
    assert text.count("->") == n_edges
    assert "x1 \\| " not in text and "{ x1 | data 2.0000 | grad -1.5000 }" in text
    assert 'label="tanh"' in text
    # the example is Karpathy's neuron, tuned so that o = tanh(n) = 1/sqrt(2)
    assert o.data == pytest.approx(2**-0.5)


def test_to_dot_escapes_record_characters():
    v = Value(1.0, label="a|b{c}")
    assert "a\\|b\\{c\\}" in to_dot(v)


def test_draw_graph_matplotlib_fallback(tmp_path):
    path = tmp_path / "g.png"
    assert draw_graph(example_graph(), path, renderer="matplotlib") == "matplotlib"
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_draw_graph_graphviz_when_present(tmp_path):
    path = tmp_path / "g.png"
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="`dot` binary is not on PATH"):
            draw_graph(example_graph(), path, renderer="graphviz")
        assert draw_graph(example_graph(), path) == "matplotlib"  # auto falls back
    else:
        assert draw_graph(example_graph(), path, renderer="graphviz") == "graphviz"
    assert path.read_bytes()[:8] == PNG_MAGIC
