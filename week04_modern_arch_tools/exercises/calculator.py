"""Week 04 exercise (stretch), the calculator tool: evaluate arithmetic by walking its ``ast``.

A model that calls ``calculator: 37 x 48`` must get ``1776`` back, and a model (or a user)
that writes ``__import__('os').system(...)`` or ``9**9**9`` must get an error string at
once, never a shell and never a minute of big-integer work. So the calculator never calls
``eval``: ``Calculator.evaluate`` parses the text with ``ast.parse(text, mode="eval")``
and hands the tree's root to ``_eval``, which computes it node by node and allows only a
whitelist. Read ``week04_modern_arch_tools/tools/calculator.py`` for the class around it.

Fill in ``eval_node`` below, then run ``make week04-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``Calculator._eval`` while its tests run: 300 random expressions
against Python's own arithmetic, examples, huge numbers refused before they are computed,
everything else an error string, eval/exec never called, and a deadline per step.
"""

from __future__ import annotations

import ast  # noqa: F401  (the node types: ast.Constant, ast.BinOp, ...)
import time  # noqa: F401  (time.monotonic, for the deadline)

# The whitelist, the package's own tables (use these dicts, not copies: a test swaps an
# entry of _FUNCTIONS to check what runs). _BINOPS and _UNARY map an ast operator *type*
# (ast.Add, ast.USub, ...) to its function; _CONSTANTS: pi, e, tau; _FUNCTIONS: sqrt, exp,
# log, ..., min, max by name. CalculatorError is what the walk raises for anything refused.
from week04_modern_arch_tools.tools.calculator import (  # noqa: F401
    _BINOPS,
    _CONSTANTS,
    _FUNCTIONS,
    _UNARY,
    CalculatorError,
)


def eval_node(self, node):
    """The value (int or float) of the expression node ``node``; ``CalculatorError`` if refused.

    Recurse into children with ``self._eval(child)`` (that is this function while the tests
    run). ``self`` is the ``Calculator``; use its checks, which raise ``CalculatorError``:
    ``self._check_int(value)`` (a real, finite number of at most ``max_digits`` digits;
    returns it), ``self._check_pow(base, exp)``, ``self._check_factorial(args)``,
    ``self._check_round(args)`` and ``self._digits(x)`` (an upper bound on x's digits).

    1. The deadline, first, at every node: if ``time.monotonic() > self._deadline`` raise
       ``CalculatorError(f"took longer than the time limit of {self.time_limit:g} s")``
       (that exact text).
    2. ``ast.Constant``: only int or float (``True`` is an int in Python: refuse bools and
       strings); return ``self._check_int(node.value)``.
    3. ``ast.UnaryOp`` whose ``type(node.op)`` is in ``_UNARY``: apply it to the operand.
    4. ``ast.BinOp`` whose ``type(node.op)`` is in ``_BINOPS``: evaluate left and right,
       then check BEFORE computing: a power with ``self._check_pow(a, b)``; a product whose
       ``self._digits(a) + self._digits(b)`` exceeds ``self.max_digits + 2`` is refused.
       Return ``self._check_int(result)``.
    5. ``ast.Name``: one of ``_CONSTANTS``; any other name is refused (say which are allowed).
    6. ``ast.Call``: ``node.func`` must be an ``ast.Name`` in ``_FUNCTIONS``, with no keyword
       arguments; evaluate the arguments, run ``self._check_factorial(args)`` or
       ``self._check_round(args)`` for those two, call ``_FUNCTIONS[name](*args)`` and
       return ``self._check_int(result)``.
    7. Anything else (attributes, subscripts, lambdas, comprehensions, ``x if c else y``,
       bit operators, ...): refuse with ``CalculatorError``, naming the node type.

    Division by zero, math domain errors and the like may simply raise: ``Calculator.run``
    turns them into ``"Error: ..."`` text.
    """
    raise NotImplementedError("not implemented yet: Calculator._eval (a whitelisted walk of the "
                              "expression tree, with the deadline and size checks)")
