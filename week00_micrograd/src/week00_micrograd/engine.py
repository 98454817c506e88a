"""A scalar reverse-mode autograd engine: ``Value`` and the graph it builds.

Every arithmetic operation on a ``Value`` returns a new ``Value`` that remembers
its inputs (``_prev``) and the *local* derivative of its output with respect to
each input (``_local``), computed once during the forward pass. ``backward()``
then walks the graph in reverse topological order and applies the chain rule:

    child.grad += local_derivative * node.grad

Design choices that make it fast (see benchmarks/engine_vs_micrograd.py):

- ``__slots__``: no per-instance ``__dict__``, so nodes are small and quick to make;
- local derivatives are numbers, not closures: ``backward`` is one tight loop
  with no Python function call per node;
- the topological sort is iterative (an explicit stack), so a 100,000-node
  chain works without touching the recursion limit;
- a constant operand (``x * 2.0``) does not become a graph node at all;
- fused n-ary nodes, ``dot`` (a neuron's weighted sum) and ``vsum``, replace
  long chains of binary ``+``/``*`` nodes with one node each.

Left out on purpose: tensors (week01 uses PyTorch for those), higher-order
derivatives (a backward pass does not build a graph), ``Value ** Value``
(write ``(b * a.log()).exp()``), comparisons and hashing by value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from operator import mul as _mul

__all__ = ["Value", "cross_entropy", "dot", "vsum"]


# ---------------------------------------------------------------------------
# input checking (only on the slow path: fast paths test ``type(x) is float``)


def _as_float(x, what: str) -> float:
    """``x`` as a float, or a TypeError that says what was wrong and what is valid."""
    if isinstance(x, numbers.Real):  # int, float, bool, fractions, numpy scalars
        return float(x)
    raise TypeError(
        f"{what}: expected a Value or a real number (int/float), "
        f"got {type(x).__name__}: {x!r}"
    )


def _lift(x, op: str) -> Value:
    """Operand ``x`` as a Value (numbers are wrapped; anything else is an error)."""
    if isinstance(x, Value):
        return x
    return Value(_as_float(x, f"Value {op} operand"))


# ---------------------------------------------------------------------------
# Value


class Value:
    """A scalar that records how it was computed, so it can be differentiated.

    >>> a, b = Value(2.0), Value(-3.0)
    >>> c = a * b + a.exp()
    >>> c.backward()
    >>> round(c.data, 6), round(a.grad, 6), b.grad
    (1.389056, 4.389056, 2.0)
    """

    __slots__ = ("data", "grad", "_prev", "_local", "_op", "label")

    def __init__(self, data, _prev: tuple = (), _local: tuple = (), _op: str = "",
                 label: str = ""):
        if type(data) is not float:
            if isinstance(data, Value):
                raise TypeError("Value(Value(...)): pass the number (x.data), or use the "
                                "Value itself; a Value cannot wrap another Value")
            data = _as_float(data, "Value(data)")
        self.data = data
        self.grad = 0.0
        self._prev = _prev  # the inputs this node was computed from
        self._local = _local  # d(self)/d(input) for each input, same order
        self._op = _op  # the operation's name, for printing and graph views
        self.label = label

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{name})"

    # -- binary arithmetic ---------------------------------------------------

    def __add__(self, other):
        if isinstance(other, Value):
            return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")
        c = other if type(other) is float else _as_float(other, "Value + operand")
        return Value(self.data + c, (self,), (1.0,), "+")

    def __radd__(self, other):  # other + self, other a number
        c = other if type(other) is float else _as_float(other, "operand + Value")
        return Value(c + self.data, (self,), (1.0,), "+")

    def __sub__(self, other):
        if isinstance(other, Value):
            return Value(self.data - other.data, (self, other), (1.0, -1.0), "-")
        c = other if type(other) is float else _as_float(other, "Value - operand")
        return Value(self.data - c, (self,), (1.0,), "-")

    def __rsub__(self, other):  # other - self
        c = other if type(other) is float else _as_float(other, "operand - Value")
        return Value(c - self.data, (self,), (-1.0,), "-")

    def __mul__(self, other):
        if isinstance(other, Value):
            return Value(self.data * other.data, (self, other), (other.data, self.data), "*")
        c = other if type(other) is float else _as_float(other, "Value * operand")
        return Value(self.data * c, (self,), (c,), "*")

    def __rmul__(self, other):  # other * self
        c = other if type(other) is float else _as_float(other, "operand * Value")
        return Value(c * self.data, (self,), (c,), "*")

    def __truediv__(self, other):
        if isinstance(other, Value):
            b = other.data
            if b == 0.0:
                raise ZeroDivisionError(f"Value division by zero: {self.data!r} / Value(0.0)")
            return Value(self.data / b, (self, other), (1.0 / b, -self.data / (b * b)), "/")
        c = other if type(other) is float else _as_float(other, "Value / operand")
        if c == 0.0:
            raise ZeroDivisionError(f"Value division by zero: {self.data!r} / 0")
        return Value(self.data / c, (self,), (1.0 / c,), "/")

    def __rtruediv__(self, other):  # other / self
        c = other if type(other) is float else _as_float(other, "operand / Value")
        b = self.data
        if b == 0.0:
            raise ZeroDivisionError(f"Value division by zero: {c!r} / Value(0.0)")
        return Value(c / b, (self,), (-c / (b * b),), "/")

    def __pow__(self, exponent):
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported: the exponent must be a number "
                            "(int/float); for a learnable exponent write (b * a.log()).exp()")
        k = exponent if type(exponent) is float else _as_float(exponent, "Value ** exponent")
        x = self.data
        if x == 0.0 and k < 0:
            raise ZeroDivisionError(f"Value(0.0) ** {k!r}: zero to a negative power is undefined")
        if x < 0.0 and not k.is_integer():
            raise ValueError(f"Value({x!r}) ** {k!r}: a negative base needs an integer exponent "
                             "(the result would be complex)")
        out = x ** k
        # d/dx x**k = k * x**(k-1): 0 for k = 0, and +inf at x = 0 for 0 < k < 1
        # (the slope of sqrt at 0), as PyTorch gives
        if k == 0.0:
            local = 0.0
        elif x == 0.0 and k < 1.0:
            local = math.inf
        else:
            local = k * x ** (k - 1.0)
        return Value(out, (self,), (local,), f"**{k:g}")

    def __rpow__(self, base):  # base ** self, base a positive number
        c = base if type(base) is float else _as_float(base, "number ** Value base")
        if c <= 0.0:
            raise ValueError(f"{c!r} ** Value: the base must be positive "
                             "(d/dx c**x = c**x * log(c) needs log(c))")
        out = c ** self.data
        return Value(out, (self,), (out * math.log(c),), "rpow")

    # -- unary operations ----------------------------------------------------

    def __neg__(self):
        return Value(-self.data, (self,), (-1.0,), "neg")

    def __pos__(self):
        return self

    def exp(self) -> Value:
        x = self.data
        try:
            out = math.exp(x)
        except OverflowError:
            raise OverflowError(f"exp({x!r}) overflows a float64 (the largest finite input is "
                                "about 709.78); scale or clip the input") from None
        return Value(out, (self,), (out,), "exp")

    def log(self) -> Value:
        x = self.data
        if not x > 0.0:  # also catches NaN
            raise ValueError(f"log({x!r}): the natural log needs a positive input; "
                             "add a small epsilon or clamp the argument")
        return Value(math.log(x), (self,), (1.0 / x,), "log")

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self) -> Value:
        x = self.data
        if x > 0.0:
            return Value(x, (self,), (1.0,), "relu")
        return Value(0.0, (self,), (0.0,), "relu")  # torch's convention: relu'(0) = 0

    def sigmoid(self) -> Value:
        x = self.data
        if x >= 0.0:  # two branches so exp never overflows
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        return Value(s, (self,), (s * (1.0 - s),), "sigmoid")

    # -- backward pass -------------------------------------------------------

    def topo(self) -> list[Value]:
        """Every node this Value depends on (itself included), inputs before outputs."""
        order: list[Value] = []
        # Iterative depth-first search: each stack entry is a node and an iterator
        # over its inputs. A node is emitted once its iterator is exhausted, i.e.
        # after all its inputs. Values hash by identity (no __eq__), so the set
        # holds the nodes themselves; in a DAG a node never re-enters while open.
        seen = {self}
        stack = [(self, iter(self._prev))]
        push, pop, add, emit = stack.append, stack.pop, seen.add, order.append
        while stack:
            node, inputs = stack[-1]
            for child in inputs:
                if child not in seen:
                    add(child)
                    push((child, iter(child._prev)))
                    break
            else:
                pop()
                emit(node)
        return order

    def backward(self, grad: float = 1.0) -> None:
        """Accumulate d(self)/d(node) into ``node.grad`` for every node in the graph.

        Like PyTorch, gradients of *leaves* (inputs, parameters) add up across
        calls: zero them (``Module.zero_grad``) between training steps. Computed
        nodes get a fresh gradient on every call (reset to 0 first), so calling
        ``backward`` twice, or on two outputs sharing a subgraph, stays correct.
        ``grad`` seeds the output's gradient (default 1).
        """
        seed = grad if type(grad) is float else _as_float(grad, "backward(grad)")
        order = self.topo()
        for node in order:
            if node._prev:
                node.grad = 0.0
        self.grad += seed
        for node in reversed(order):
            g = node.grad
            for child, local in zip(node._prev, node._local):
                child.grad += local * g


# ---------------------------------------------------------------------------
# fused n-ary nodes


def dot(weights: Sequence[Value], inputs: Sequence, bias: Value | float | None = None) -> Value:
    """``bias + sum(w_i * x_i)`` as ONE graph node (a neuron's pre-activation).

    ``inputs`` may be Values or plain numbers (numbers get no gradient). The sum
    runs left to right starting from the bias, so the result is bit-identical to
    ``sum((w * x for w, x in zip(weights, inputs)), bias)``.
    """
    if len(weights) != len(inputs):
        raise ValueError(f"dot: {len(weights)} weights but {len(inputs)} inputs; "
                         "they must have the same length")
    if set(map(type, weights)) != {Value} and not all(isinstance(w, Value) for w in weights):
        bad = next(w for w in weights if not isinstance(w, Value))
        raise TypeError(f"dot: weights must be Values, got {type(bad).__name__}: {bad!r}")
    wd = [w.data for w in weights]
    kinds = set(map(type, inputs))
    if kinds == {Value}:  # hidden layers: every input carries a gradient
        xd = [x.data for x in inputs]
        prev = (*weights, *inputs)
        local = (*xd, *wd)
    elif kinds <= {float}:  # first layer: raw float features, no gradient for them
        xd = inputs
        prev = tuple(weights)
        local = tuple(xd)
    else:  # mixed or non-float numbers: the general (slower) path
        xd, prev_x, local_x = [], [], []
        for x, w in zip(inputs, wd):
            if isinstance(x, Value):
                xd.append(x.data)
                prev_x.append(x)
                local_x.append(w)
            else:
                xd.append(_as_float(x, "dot input"))
        prev = (*weights, *prev_x)
        local = (*xd, *local_x)
    if bias is None:
        acc = 0.0
    elif isinstance(bias, Value):
        acc = bias.data
        prev = (bias, *prev)
        local = (1.0, *local)
    else:
        acc = _as_float(bias, "dot(bias)")
    for p in map(_mul, wd, xd):  # a plain loop, not sum(): Python >= 3.12 compensates sum()
        acc += p
    return Value(acc, prev, local, "dot")


def vsum(values: Iterable, start: float = 0.0) -> Value:
    """``start + v_0 + v_1 + ...`` as ONE graph node (left-to-right, like ``sum``)."""
    acc = start if type(start) is float else _as_float(start, "vsum(start)")
    prev = []
    for v in values:
        if isinstance(v, Value):
            acc += v.data
            prev.append(v)
        else:
            acc += v if type(v) is float else _as_float(v, "vsum item")
    return Value(acc, tuple(prev), (1.0,) * len(prev), "sum")


def cross_entropy(logits: Sequence[Value], target: int) -> Value:
    """``-log softmax(logits)[target]`` as ONE graph node (the classifier's loss).

    Forward, stably: ``logsumexp(z) - z[target]`` with the max subtracted first, so
    logits of 1000 do not overflow. The local derivative with respect to each logit is
    the famous one: ``softmax(z)_i - [i == target]``; no chain of exp/sum/log nodes.
    """
    if not logits:
        raise ValueError("cross_entropy: logits is empty; give one Value per class")
    if not all(isinstance(z, Value) for z in logits):
        bad = next(z for z in logits if not isinstance(z, Value))
        raise TypeError(f"cross_entropy: logits must be Values, got {type(bad).__name__}")
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(logits):
        raise ValueError(f"cross_entropy: target must be a class index in [0, {len(logits)}), "
                         f"got {target!r}")
    zs = [z.data for z in logits]
    top = max(zs)
    exps = [math.exp(z - top) for z in zs]
    total = sum(exps)
    loss = math.log(total) + top - zs[target]
    local = tuple(e / total - (1.0 if i == target else 0.0) for i, e in enumerate(exps))
    return Value(loss, tuple(logits), local, "xent")
