"""The calculator: right answers, bounded work, and no code execution."""

import ast
import builtins
import math
import random
import time

import pytest

from week04_modern_arch_tools import Calculator
from week04_modern_arch_tools.tools.calculator import format_number

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_matches_python_arithmetic_on_random_expressions():
    """Reference: Python's own evaluation of the same (trusted, test-generated) expressions."""
    rng = random.Random(0)
    calc = Calculator()
    for _ in range(300):
        ops = [rng.choice(["+", "-", "*", "/", "//", "%", "**"]) for _ in range(rng.randint(1, 3))]
        expr = str(rng.randint(1, 60))
        for op in ops:
            rhs = rng.randint(1, 4) if op == "**" else rng.randint(1, 60)
            expr = f"({expr}) {op} {rhs}" if rng.random() < 0.5 else f"{expr} {op} {rhs}"
        try:
            expected = format_number(eval(expr))  # the test's reference, never the tool's
        except (ZeroDivisionError, OverflowError):
            continue
        got = calc.run(expr)
        if len(expected) > 100:
            assert got.startswith("Error")
        else:
            assert got == expected, expr


@pytest.mark.parametrize("expr, want", [
    ("2+2", "4"), ("37 x 48", "1776"), ("2^10", "1024"), ("10/4", "2.5"), ("-3**2", "-9"),
    ("sqrt(16)", "4"), ("factorial(20)", "2432902008176640000"), ("max(3, 9, 4)", "9"),
    ("round(pi, 3)", "3.142"), ("  7 // 2 ", "3"), ("2**0.5", "1.41421356237")])
def test_examples(expr, want):
    assert Calculator().run(expr) == want


@pytest.mark.parametrize("expr", [
    "9**9**9", "factorial(3249)", "10**10**10", "2**100000", "99999999999**99999",
    "factorial(100000)", "(10**90)*(10**90)", "2.0**5000", "1e308*10"])
def test_huge_numbers_are_refused_before_they_are_computed(expr):
    out = Calculator().run(expr)
    assert out.startswith("Error") and ("digits" in out or "limit" in out or "finite" in out
                                        or "large" in out)


def test_round_digits_are_bounded_before_round_runs(monkeypatch):
    """``round(x, n)`` computes ``10**|n|`` inside; with n = -10**7 that took minutes in the
    calling process. The refusal must come before round is called at all."""
    from week04_modern_arch_tools.tools import calculator as calc_mod

    calls = []
    real_round = calc_mod._FUNCTIONS["round"]
    monkeypatch.setitem(calc_mod._FUNCTIONS, "round",
                        lambda *a: calls.append(a) or real_round(*a))
    calc = Calculator()
    for expr in ("round(7, -10**7)", "round(7, 10**6)", "round(2.5, 101)"):
        out = calc.run(expr)
        assert out.startswith("Error") and "digits" in out, (expr, out)
    assert calls == []  # refused before computing
    assert calc.run("round(1234.5678, 2)") == "1234.57" and calc.run("round(1234, -2)") == "1200"
    assert calc.run("round(7, 0.5)").startswith("Error")
    assert len(calls) == 2


@pytest.mark.parametrize("expr", [
    "__import__('os')", "__import__('os').system('echo pwned')", "open('/etc/passwd')",
    "(1).__class__.__bases__", "[x for x in range(10)]", "lambda: 1", "'a' * 10", "a",
    "eval('1')", "exec('1')", "math.sqrt(2)", "sqrt(x=4)", "True + 1", "x = 1", "",
    "1 if 1 else 2", "(" * 300 + "1" + ")" * 300, "1/0", "sqrt(-1)", "(-8)**0.5"])
def test_everything_else_is_an_error_string(expr):
    out = Calculator().run(expr)
    assert isinstance(out, str) and out.startswith("Error")


def test_never_calls_eval_or_exec(monkeypatch):
    """eval/exec are poisoned; compile may only build a syntax tree (ast.parse), never code."""
    real_compile = builtins.compile

    def boom(*a, **k):
        raise AssertionError("the calculator must not call eval/exec")

    def tree_only(source, filename, mode, flags=0, *a, **k):
        assert flags & ast.PyCF_ONLY_AST, "compile() was asked for a code object"
        return real_compile(source, filename, mode, flags, *a, **k)

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    monkeypatch.setattr(builtins, "compile", tree_only)
    calc = Calculator()
    assert calc.run("6 * 7") == "42"
    assert calc.run("__import__('os')").startswith("Error")


def test_satisfies_the_tool_protocol():
    from shared import Tool

    assert isinstance(Calculator(), Tool) and Calculator.name == "calculator"
    assert Calculator().run(None).startswith("Error")


def test_a_deadline_is_checked_before_every_step(monkeypatch):
    """The walk stops at ``time_limit`` even if each step were slow: here every sqrt sleeps
    20 ms (a stand-in for a slow operation), and 40 of them meet a 0.1 s limit."""
    from week04_modern_arch_tools.tools import calculator as calc

    calls = []

    def slow_sqrt(x):
        calls.append(x)
        time.sleep(0.02)
        return math.sqrt(x)

    monkeypatch.setitem(calc._FUNCTIONS, "sqrt", slow_sqrt)
    c = Calculator(time_limit=0.1)
    out = c.run(" + ".join(["sqrt(4)"] * 40))
    assert out == "Error: took longer than the time limit of 0.1 s"
    assert 1 <= len(calls) < 40  # it stopped part-way, not after doing all the work
    assert c.run("sqrt(16)") == "4"  # a fresh deadline for the next expression
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        Calculator(time_limit=0)


@pytest.mark.parametrize("expr", ["1 << 10**9", "2 >> 1", "5 & 3", "5 | 3", "~5",
                                  "((((((((((" * 30 + "1" + "))))))))))" * 30,
                                  "1" * 499])
def test_shifts_bitwise_and_deep_nesting_are_errors(expr):
    out = Calculator().run(expr)
    assert out.startswith("Error"), out
