"""Worked solution: the calculator's ast walk (week04 exercises)."""

from __future__ import annotations

import ast
import time

from week04_modern_arch_tools.tools.calculator import (
    _BINOPS,
    _CONSTANTS,
    _FUNCTIONS,
    _UNARY,
    CalculatorError,
)


def eval_node(self, node):
    """A whitelisted, deadline-checked walk: numbers, + - * / // % **, unary +/-, names, calls."""
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
        if isinstance(node.op, ast.Pow):
            self._check_pow(a, b)
        elif isinstance(node.op, ast.Mult) and \
                self._digits(a) + self._digits(b) > self.max_digits + 2:
            raise CalculatorError(f"result has more than {self.max_digits} digits")
        return self._check_int(_BINOPS[type(node.op)](a, b))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; allowed: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS or node.keywords:
            raise CalculatorError(f"only these functions are allowed: {', '.join(_FUNCTIONS)}")
        args = [self._eval(a) for a in node.args]
        if name == "factorial":
            self._check_factorial(args)
        elif name == "round":
            self._check_round(args)
        return self._check_int(_FUNCTIONS[name](*args))
    raise CalculatorError(f"{type(node).__name__} is not allowed in arithmetic")
