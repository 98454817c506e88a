"""Bad input fails loudly, with a message that says what was wrong and what is valid."""

from __future__ import annotations

import pytest

from week00_micrograd import (
    MLP,
    SGD,
    AdamW,
    Layer,
    Neuron,
    Value,
    cosine_lr,
    dot,
    make_moons,
    to_dot,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.mark.parametrize("bad", ["1.0", None, [1.0], 1 + 2j, object()])
def test_value_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="expected a Value or a real number"):
        Value(bad)


def test_value_of_value_is_an_error():
    with pytest.raises(TypeError, match="cannot wrap another Value"):
        Value(Value(1.0))


@pytest.mark.parametrize("op", [
    lambda v: v + "a", lambda v: "a" + v, lambda v: v * None, lambda v: None * v,
    lambda v: v - [1], lambda v: [1] - v, lambda v: v / "2", lambda v: "2" / v,
    lambda v: v ** "2", lambda v: v + 1j,
])
def test_non_numeric_operand_is_a_type_error(op):
    with pytest.raises(TypeError, match="expected a Value or a real number"):
        op(Value(2.0))


@pytest.mark.parametrize("x", [0.0, -1.0, -1e-300, float("nan")])
def test_log_of_non_positive(x):
    with pytest.raises(ValueError, match="natural log needs a positive input"):
        Value(x).log()


def test_power_errors():
    with pytest.raises(TypeError, match="exponent must be a number"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="negative base needs an integer exponent"):
        Value(-2.0) ** 0.5
    with pytest.raises(ZeroDivisionError, match="zero to a negative power"):
        Value(0.0) ** -1
    with pytest.raises(ValueError, match="base must be positive"):
        (-2.0) ** Value(0.5)


def test_division_by_zero():
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        Value(1.0) / Value(0.0)
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        Value(1.0) / 0
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        1.0 / Value(0.0)


def test_exp_overflow_says_the_limit():
    with pytest.raises(OverflowError, match="709.78"):
        Value(1000.0).exp()


def test_backward_seed_must_be_a_number():
    with pytest.raises(TypeError, match="backward"):
        Value(1.0).exp().backward("one")


def test_dot_errors():
    with pytest.raises(ValueError, match="same length"):
        dot([Value(1.0)], [1.0, 2.0])
    with pytest.raises(TypeError, match="weights must be Values"):
        dot([1.0, Value(2.0)], [1.0, 2.0])
    with pytest.raises(TypeError, match="expected a Value or a real number"):
        dot([Value(1.0)], ["x"])


def test_nn_errors():
    with pytest.raises(ValueError, match="unknown activation 'gelu'; valid: relu, tanh"):
        Neuron(3, activation="gelu")
    with pytest.raises(ValueError, match="nin >= 1"):
        Neuron(0)
    with pytest.raises(ValueError, match="nout >= 1"):
        Layer(3, 0)
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(2, [])
    with pytest.raises(ValueError, match="got an input of length 3"):
        MLP(2, [4, 1])([1.0, 2.0, 3.0])


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="must be Values"):
        SGD([1.0], lr=0.1)
    with pytest.raises(ValueError, match="lr must be a number >= 0"):
        AdamW([Value(1.0)], lr=-1.0)
    with pytest.raises(ValueError, match="betas must each be in"):
        AdamW([Value(1.0)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_lr(0, 0.1, total_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="step must be >= 0"):
        cosine_lr(-1, 0.1, total_steps=10)


def test_demo_and_viz_errors():
    with pytest.raises(ValueError, match="n >= 2"):
        make_moons(1)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        make_moons(10, noise=-0.1)
    with pytest.raises(TypeError, match="to_dot needs a Value"):
        to_dot(3.0)
