"""Week 00 exercises, the engine: local gradients, the topological order, the backward pass,
and the cross-entropy loss as one node.

Fill in the functions below, then run ``make week00-exercises``. Each one replaces the
function or method of the same name in ``week00_micrograd`` while its tests run (they
compare against ``torch.autograd``), so everything else you use is the package's.

What a ``Value`` holds: ``data`` (the number), ``grad`` (d output / d this, filled in by
backward), ``_prev`` (the inputs it was computed from, a tuple of Values) and ``_local``
(for each input, the local derivative d self / d input, already a number).
"""


def tanh(self):
    """``tanh`` of this Value, as a new node that knows its local derivative.

    Make ``t = math.tanh(self.data)`` and return ``Value(t, (self,), (local,), "tanh")``,
    where ``local`` is d tanh(x) / dx written with ``t`` (no second tanh needed). That
    tuple of local derivatives, one per input, is all ``backward`` ever needs from a node.
    (``Value`` is ``type(self)``; ``import math`` at the top is yours to add.)
    """
    raise NotImplementedError("not implemented yet: Value.tanh (the forward value and its "
                              "local derivative, 1 - t**2)")


def exp(self):
    """``e ** self`` as a new node: ``Value(out, (self,), (local,), "exp")``.

    The local derivative of exp is exp itself. An input above ~709.78 overflows a float64:
    raise an ``OverflowError`` that says so rather than returning inf.
    """
    raise NotImplementedError("not implemented yet: Value.exp (out = e**x, and d out / dx "
                              "= out)")


def cross_entropy(logits, target: int):
    """``-log softmax(logits)[target]`` as ONE node over all the logits.

    Forward, stably: subtract ``m = max(z)`` before exponentiating, so
    ``loss = log(sum(exp(z_i - m))) + m - z[target]``. The local derivative with respect
    to logit i is ``softmax(z)_i - (1 if i == target else 0)``: return
    ``Value(loss, tuple(logits), locals, "xent")``. Bad input: an empty list, a logit that
    is not a Value, a target outside ``[0, len(logits))``: a clear error.
    """
    raise NotImplementedError("not implemented yet: cross_entropy (stable logsumexp minus the "
                              "target logit; local gradients softmax - one_hot)")


def topo(self) -> list:
    """Every node ``self`` depends on (``self`` included), each input before its outputs.

    Depth-first from ``self``: emit a node after all of its inputs. Do it without recursion
    (an explicit stack), because the tests walk a 100,000-node chain and Python's recursion
    limit is about 1,000. Each node appears once, even when several outputs share it.
    """
    raise NotImplementedError("not implemented yet: Value.topo (an iterative depth-first "
                              "order, inputs before outputs; see its docstring)")


def backward(self, grad: float = 1.0) -> None:
    """Accumulate d(self)/d(node) into ``node.grad`` for every node in the graph.

    1. ``order = self.topo()``; set ``grad = 0.0`` on every computed node (one with inputs),
       so calling backward twice stays right. Leaves keep what they have: their gradients
       add up across calls, as in PyTorch.
    2. Seed: ``self.grad += grad``.
    3. Walk ``order`` in reverse; for each node and each (input, local derivative) pair in
       ``zip(node._prev, node._local)``: ``input.grad += local * node.grad`` (the chain rule).
    """
    raise NotImplementedError("not implemented yet: Value.backward (zero the computed "
                              "nodes, seed, then the chain rule in reverse topological order)")
