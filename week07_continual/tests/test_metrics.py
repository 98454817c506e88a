"""ACC / BWT / FWT / forgetting on hand-built accuracy matrices (values derived in docstrings)."""

import math

import numpy as np
import pytest

from week07_continual import AccuracyMatrix, plot_heatmap

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _matrix():
    """Three tasks.

        b = [0.1, 0.2, 0.3]                 (before training)
        R = [[0.9, 0.3, 0.4],               (after task 0)
             [0.6, 0.8, 0.5],               (after task 1)
             [0.5, 0.7, 0.9]]               (after task 2)

    ACC = (0.5 + 0.7 + 0.9) / 3                       = 0.7
    BWT = ((0.5 - 0.9) + (0.7 - 0.8)) / 2             = -0.25
    FWT = ((R[0][1] - b1) + (R[1][2] - b2)) / 2
        = ((0.3 - 0.2) + (0.5 - 0.3)) / 2             = 0.15
    forgetting: task 0 best before the end = max(0.9, 0.6) = 0.9 -> 0.9 - 0.5 = 0.4
                task 1 best = max(R[1][1]) = 0.8 -> 0.8 - 0.7 = 0.1
                mean = 0.25
    """
    m = AccuracyMatrix(["a", "b", "c"])
    m.record_row(-1, [0.1, 0.2, 0.3])
    for i, row in enumerate([[0.9, 0.3, 0.4], [0.6, 0.8, 0.5], [0.5, 0.7, 0.9]]):
        m.record_row(i, row)
    return m


def test_formulas_on_a_hand_built_matrix():
    m = _matrix()
    s = m.summary()
    assert s["acc"] == pytest.approx(0.7)
    assert s["bwt"] == pytest.approx(-0.25)
    assert s["fwt"] == pytest.approx(0.15)
    assert s["forgetting"] == pytest.approx(0.25)


def test_forgetting_is_max_based_not_diagonal_based():
    """Task 0 improves after task 1 then drops: forgetting uses the best (0.95), BWT the diagonal.

        R = [[0.8, 0.0], [0.95, ...]] is two tasks; take three to see the difference:
        R[:, 0] = 0.8, 0.95, 0.7 -> forgetting_0 = 0.95 - 0.7 = 0.25, BWT term = 0.7 - 0.8 = -0.1
        task 1: R[1][1] = 0.9, R[2][1] = 0.9 -> forgetting_1 = 0, BWT term 0
        forgetting = 0.125, BWT = -0.05
    """
    m = AccuracyMatrix(["a", "b", "c"], R=np.array([[0.8, 0, 0], [0.95, 0.9, 0], [0.7, 0.9, 1.0]]))
    assert m.forgetting() == pytest.approx(0.125)
    assert m.bwt() == pytest.approx(-0.05)


def test_lower_is_better_flips_signs():
    """bpb: a task whose bpb rises from 1.0 to 1.5 was forgotten: BWT -0.5, forgetting +0.5.

    R = [[1.0, 2.0], [1.5, 1.2]], b = [3.0, 2.5]
    BWT = -(1.5 - 1.0) = -0.5; FWT = -(R[0][1] - b1) = -(2.0 - 2.5) = 0.5 (task 0 helped task 1);
    forgetting = best (lowest) before the end 1.0 -> 1.5 - 1.0 = 0.5; ACC = mean(1.5, 1.2) = 1.35
    """
    m = AccuracyMatrix(["x", "y"], higher_is_better=False, unit="bpb",
                       R=np.array([[1.0, 2.0], [1.5, 1.2]]), b=np.array([3.0, 2.5]))
    assert m.bwt() == pytest.approx(-0.5)
    assert m.fwt() == pytest.approx(0.5)
    assert m.forgetting() == pytest.approx(0.5)
    assert m.acc() == pytest.approx(1.35)


def test_incomplete_matrix_and_bad_input_raise():
    m = AccuracyMatrix(["a", "b"])
    m.record(0, 0, 1.0)
    with pytest.raises(ValueError, match="incomplete"):
        m.acc()
    with pytest.raises(IndexError):
        m.record(2, 0, 1.0)
    with pytest.raises(ValueError, match="unique"):
        AccuracyMatrix(["a", "a"])
    single = AccuracyMatrix(["only"], R=np.array([[0.5]]))
    assert single.acc() == 0.5 and math.isnan(single.bwt())


def test_round_trip_markdown_and_heatmap(tmp_path):
    m = _matrix()
    back = AccuracyMatrix.from_dict(m.to_dict())
    assert np.allclose(back.R, m.R) and np.allclose(back.b, m.b)
    assert "| c | 0.500 | 0.700 | 0.900 |" in m.to_markdown()
    path = tmp_path / "heat.png"
    plot_heatmap(m, "test", path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
