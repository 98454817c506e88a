"""``Calculator``: arithmetic by walking Python's ``ast``, never ``eval``.

The expression is parsed with ``ast.parse(text, mode="eval")`` and evaluated
node by node. Only a whitelist exists: int/float literals, ``+ - * / // % **``,
unary ``+``/``-``, parentheses (they are just tree shape), the names ``pi``,
``e``, ``tau`` and a few functions (``sqrt``, ``exp``, ``log``, ``log2``,
``log10``, ``sin``, ``cos``, ``tan``, ``abs``, ``round``, ``floor``, ``ceil``,
``factorial``, ``min``, ``max``). Anything else (attribute access, names,
calls to anything not listed, subscripts, strings, lambdas, comprehensions)
is rejected before it runs, so ``__import__('os')`` never runs.

Every operation is checked *before* it is computed, so work stays small:
integers are capped at ``max_digits`` decimal digits (a product's size is
bounded by the sum of its factors' bit lengths, a power's by
``exponent * log2(base)``, a factorial's by ``log10(n!)`` from lgamma), and
exponents by ``max_exponent``, ``round``'s digits by ``max_digits``.
``9**9**9``, ``factorial(3249)`` (10,000 digits) or ``round(7, -10**7)``
answer with an error string immediately; shifts, bitwise operators and everything else
are not in the whitelist at all. Each step is therefore a few microseconds, and the walk
checks a deadline (``time_limit`` seconds, default 1) before every node, so no expression
can hold the caller longer than that. As people write them,
``x``, ``×``, ``÷`` and ``^`` are read as ``*``, ``*``, ``/`` and ``**``
(so ``^`` is a power here, not Python's xor).

Left out: variables, symbolic algebra, complex numbers, units.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import time
import warnings

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log2": math.log2,
              "log10": math.log10, "sin": math.sin, "cos": math.cos, "tan": math.tan,
              "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
              "factorial": math.factorial, "min": min, "max": max}
_LOG10_2 = math.log10(2)


class CalculatorError(ValueError):
    """What the calculator answers with (as text) instead of a number."""


class Calculator:
    """Safe arithmetic; satisfies ``shared.Tool`` (name "calculator")."""

    name = "calculator"

    def __init__(self, max_digits: int = 100, max_exponent: int = 10_000, max_length: int = 500,
                 time_limit: float = 1.0):
        if not time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit!r}")
        self.max_digits = max_digits
        self.max_exponent = max_exponent
        self.max_length = max_length
        self.time_limit = time_limit
        self._deadline = math.inf

    # -- the tool
    def run(self, text: str) -> str:
        """The value of the expression as text, or ``"Error: ..."``; never raises."""
        try:
            return format_number(self.evaluate(text))
        except CalculatorError as e:
            return f"Error: {e}"
        except ZeroDivisionError:
            return "Error: division by zero"
        except (OverflowError, MemoryError, RecursionError):
            return "Error: the number is too large"
        except (ValueError, TypeError) as e:  # math domain errors, bad argument counts
            return f"Error: {e}"

    def evaluate(self, text: str) -> int | float:
        """The value of ``text``; raises ``CalculatorError`` for anything not allowed."""
        if not isinstance(text, str):
            raise CalculatorError(f"expected an expression as text, got {type(text).__name__}")
        if len(text) > self.max_length:
            raise CalculatorError(f"expression longer than {self.max_length} characters")
        expr = text.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
        expr = re.sub(r"(?<=[\d)\s])x(?=[\d(\s])", "*", expr)  # 3 x 4 -> 3 * 4
        if not expr:
            raise CalculatorError("empty expression")
        try:
            with warnings.catch_warnings():  # "3a" warns before it fails; the error says enough
                warnings.simplefilter("ignore", SyntaxWarning)
                tree = ast.parse(expr, mode="eval")
        except SyntaxError:
            raise CalculatorError(f"not an arithmetic expression: {text.strip()!r}") from None
        self._deadline = time.monotonic() + self.time_limit
        try:
            return self._eval(tree.body)
        finally:
            self._deadline = math.inf

    # -- the walk
    def _check_int(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalculatorError("the result is not a real number")
        if isinstance(value, int) and value.bit_length() * _LOG10_2 > self.max_digits + 1:
            raise CalculatorError(f"result has more than {self.max_digits} digits")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError("result is not a finite number")
        return value

    def _digits(self, x) -> float:
        """Upper bound on the decimal digits of |x| (0 for |x| < 1)."""
        if isinstance(x, int):
            return x.bit_length() * _LOG10_2
        return math.log10(abs(x)) if abs(x) >= 1 else 0.0

    def _eval(self, node):
        if time.monotonic() > self._deadline:
            raise CalculatorError(f"took longer than the time limit of {self.time_limit:g} s")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
            return self._check_int(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._eval(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = self._eval(node.left), self._eval(node.right)
            op = type(node.op)
            if op is ast.Pow:
                self._check_pow(a, b)
            elif op is ast.Mult and self._digits(a) + self._digits(b) > self.max_digits + 2:
                raise CalculatorError(f"result has more than {self.max_digits} digits")
            return self._check_int(_BINOPS[op](a, b))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise CalculatorError(f"unknown name {node.id!r}; allowed: "
                                  f"{', '.join(_CONSTANTS)} and functions {', '.join(_FUNCTIONS)}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or \
                    node.keywords:
                raise CalculatorError(f"only these functions are allowed: {', '.join(_FUNCTIONS)}")
            args = [self._eval(a) for a in node.args]
            name = node.func.id
            if name == "factorial":
                self._check_factorial(args)
            elif name == "round":
                self._check_round(args)
            return self._check_int(_FUNCTIONS[name](*args))
        raise CalculatorError(f"{type(node).__name__} is not allowed in arithmetic")

    def _check_pow(self, base, exp):
        if abs(exp) > self.max_exponent:
            raise CalculatorError(f"exponent {exp} is beyond the limit of {self.max_exponent}")
        if base not in (0, 1, -1) and exp > 0 and \
                exp * math.log10(abs(base)) > self.max_digits + 1:
            raise CalculatorError(f"result has more than {self.max_digits} digits")

    def _check_round(self, args):
        """``round(x, n)`` builds ``10**|n|`` inside: ``round(7, -10**7)`` would take minutes."""
        if len(args) == 2:
            n = args[1]
            if not isinstance(n, int):
                raise CalculatorError("round's second argument (the digits) must be an integer")
            if abs(n) > self.max_digits:
                raise CalculatorError(f"round to {n} digits is beyond the limit of "
                                      f"{self.max_digits} digits")

    def _check_factorial(self, args):
        if len(args) != 1 or not isinstance(args[0], int) or args[0] < 0:
            raise CalculatorError("factorial takes one non-negative integer")
        if math.lgamma(args[0] + 1) / math.log(10) > self.max_digits:
            raise CalculatorError(f"factorial({args[0]}) has more than {self.max_digits} digits")


def format_number(x: int | float) -> str:
    """Integers exactly; floats to 12 significant digits, integral ones without ``.0``."""
    if isinstance(x, int):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.12g}"
