"""Values and gradients of ``Value`` expressions against PyTorch autograd (float64).

Every expression below is written once and run twice: on our ``Value``s and on
float64 torch tensors (they share the method names ``exp log tanh relu
sigmoid``), then values and input gradients are compared.
"""

from __future__ import annotations

import math

import pytest
import torch

from week00_micrograd import Value, dot, vsum

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------------------
# the expressions: f(a, b, c) using only operations both libraries have

EXPRESSIONS = {
    "add": lambda a, b, c: a + b,
    "sub": lambda a, b, c: a - b,
    "mul": lambda a, b, c: a * b,
    "div": lambda a, b, c: a / b,
    "neg": lambda a, b, c: -a,
    "pos": lambda a, b, c: +a * b,
    "square": lambda a, b, c: a**2,
    "cube": lambda a, b, c: b**3,
    "inverse": lambda a, b, c: a**-1,
    "int_pow_negative_base": lambda a, b, c: b**4 - b**-3,
    "sqrt": lambda a, b, c: c**0.5,
    "frac_pow": lambda a, b, c: c**-1.5 + c**2.25,
    "pow_zero": lambda a, b, c: a**0 * b,
    "radd": lambda a, b, c: 2.5 + a,
    "rsub": lambda a, b, c: 2.5 - a,
    "rmul": lambda a, b, c: 2.5 * a,
    "rdiv": lambda a, b, c: 2.5 / a,
    "add_const": lambda a, b, c: a + 2,
    "sub_const": lambda a, b, c: a - 2,
    "mul_const": lambda a, b, c: a * -3,
    "div_const": lambda a, b, c: a / 4,
    "rpow": lambda a, b, c: 2.0**a + 0.5**b,
    "exp": lambda a, b, c: a.exp(),
    "log": lambda a, b, c: c.log(),
    "tanh": lambda a, b, c: b.tanh(),
    "relu_pos": lambda a, b, c: a.relu(),
    "relu_neg": lambda a, b, c: b.relu() + a,
    "sigmoid_pos": lambda a, b, c: a.sigmoid(),
    "sigmoid_neg": lambda a, b, c: (b * 20).sigmoid(),
    "reuse_same_node": lambda a, b, c: a * a + a,
    "diamond": lambda a, b, c: (lambda d: d * d.tanh() + d.exp())(a * b + c),
    "neuron_tanh": lambda a, b, c: (a * -3.0 + b * 1.0 + c).tanh(),
    "softplus": lambda a, b, c: (1 + a.exp()).log(),
    "logsumexp": lambda a, b, c: (a.exp() + b.exp() + c.exp()).log(),
    "softmax_ce": lambda a, b, c: -(a - (a.exp() + b.exp() + c.exp()).log()),
    "bce_logit": lambda a, b, c: -(b.sigmoid().log() * 0.3 + (1 - b.sigmoid()).log() * 0.7),
    "rational": lambda a, b, c: (a * b - c) / (a * a + b * b + 1),
    "nested_unary": lambda a, b, c: ((a.tanh() * b.sigmoid()).exp() + 1).log().relu(),
    "long_mix": lambda a, b, c: (
        ((a + b) * (b - c) / (c + 3) - (a.relu() * 2 + 1).log()) ** 2
        + 10.0 / (c * c + 1) - 0.5 * (b * c).tanh()
    ),
    "polynomial": lambda a, b, c: 3 * a**3 - 2 * a**2 * b + a * b * c - 7,
}

INPUTS = [(1.3, -0.7, 2.1), (-0.4, 1.9, 0.35), (2.2, -2.5, 5.0)]


def _run_both(fn, xs):
    vals = [Value(x) for x in xs]
    out = fn(*vals)
    out.backward()
    tens = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    ref = fn(*tens)
    ref.backward()
    ref_grads = [0.0 if t.grad is None else t.grad.item() for t in tens]
    return out.data, [v.grad for v in vals], ref.item(), ref_grads


@pytest.mark.parametrize("xs", INPUTS, ids=lambda xs: "x=" + ",".join(map(str, xs)))
@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expression_matches_torch(name, xs, tol):
    value, grads, ref_value, ref_grads = _run_both(EXPRESSIONS[name], xs)
    assert value == pytest.approx(ref_value, rel=tol, abs=tol), name
    assert grads == pytest.approx(ref_grads, rel=tol, abs=tol), name


def test_relu_gradient_at_zero_is_zero_like_torch():
    x = Value(0.0)
    x.relu().backward()
    t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    t.relu().backward()
    assert x.grad == t.grad.item() == 0.0


def test_sqrt_slope_at_zero_is_inf_like_torch():
    x = Value(0.0)
    (x**0.5).backward()
    t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    (t**0.5).backward()
    assert x.grad == t.grad.item() == math.inf


def test_sigmoid_is_stable_for_large_inputs():
    """Two branches keep exp from overflowing: sigmoid(+-800) is exactly 1 / 0."""
    big, small = Value(800.0).sigmoid(), Value(-800.0).sigmoid()
    assert big.data == torch.tensor(800.0, dtype=torch.float64).sigmoid().item() == 1.0
    assert small.data == pytest.approx(0.0, abs=1e-300)


# ---------------------------------------------------------------------------
# fused nodes


def test_dot_matches_torch_and_unfused_sum(tol):
    ws = [Value(w) for w in (0.3, -1.2, 0.8, 2.0)]
    xs = [Value(x) for x in (1.5, 0.25, -0.6, 0.1)]
    b = Value(-0.4)
    out = dot(ws, xs, b).tanh()
    out.backward()
    # the same node built from binary ops is bit-identical (same left-to-right order)
    unfused = sum((w * x for w, x in zip(ws, xs)), b)
    assert dot(ws, xs, b).data == unfused.data

    tw = torch.tensor([w.data for w in ws], dtype=torch.float64, requires_grad=True)
    tx = torch.tensor([x.data for x in xs], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b.data, dtype=torch.float64, requires_grad=True)
    ref = (tw @ tx + tb).tanh()
    ref.backward()
    assert out.data == pytest.approx(ref.item(), rel=tol)
    assert [w.grad for w in ws] == pytest.approx(tw.grad.tolist(), rel=tol)
    assert [x.grad for x in xs] == pytest.approx(tx.grad.tolist(), rel=tol)
    assert b.grad == pytest.approx(tb.grad.item(), rel=tol)


def test_dot_with_number_inputs_and_mixed_inputs(tol):
    ws = [Value(0.5), Value(-2.0), Value(1.5)]
    v = Value(3.0)
    out = dot(ws, [1, v, 0.5])  # int, Value, float: the general path
    out.backward()
    assert out.data == pytest.approx(0.5 * 1 - 2.0 * 3.0 + 1.5 * 0.5)
    assert [w.grad for w in ws] == pytest.approx([1.0, 3.0, 0.5])
    assert v.grad == pytest.approx(-2.0)


def test_vsum_matches_builtin_sum_and_torch(tol):
    xs = [Value(x) for x in (0.1, 0.2, 0.3, -4.0)]
    total = vsum([x * x for x in xs], start=1.0) + vsum([xs[0], 2.0])
    total.backward()
    assert total.data == pytest.approx(1.0 + 0.01 + 0.04 + 0.09 + 16.0 + 0.1 + 2.0)
    t = torch.tensor([x.data for x in xs], dtype=torch.float64, requires_grad=True)
    ref = 1.0 + (t * t).sum() + t[0] + 2.0
    ref.backward()
    assert [x.grad for x in xs] == pytest.approx(t.grad.tolist(), rel=tol)


# ---------------------------------------------------------------------------
# backward semantics


def test_leaf_gradients_accumulate_like_torch():
    """Two backward calls on the same graph double the leaf gradients (torch semantics)."""
    a, b = Value(1.5), Value(-2.0)
    h = a * b  # an interior node shared by two outputs
    out1, out2 = h.tanh(), h * 3.0
    out1.backward()
    out2.backward()
    out2.backward()
    ta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    th = ta * tb
    th.tanh().backward(retain_graph=True)
    (th * 3.0).backward(retain_graph=True)
    (th * 3.0).backward()
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-12)
    assert b.grad == pytest.approx(tb.grad.item(), rel=1e-12)


def test_backward_seed_scales_gradients():
    x = Value(0.7)
    y = x.exp()
    y.backward(2.5)
    assert x.grad == pytest.approx(2.5 * math.exp(0.7), rel=1e-15)


def test_topo_lists_inputs_before_outputs():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    e = d.tanh() * c
    order = e.topo()
    pos = {id(v): i for i, v in enumerate(order)}
    assert len(order) == 6  # a, b, c, d, tanh(d), e
    for v in order:
        for child in v._prev:
            assert pos[id(child)] < pos[id(v)]
