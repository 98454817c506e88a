"""Week 00 exercises, the engine: the topological order and the backward pass.

Fill in the two functions below, then run ``make week00-exercises``. Each one replaces the
method of the same name on ``week00_micrograd.Value`` while that method's tests run (the
tests compare against ``torch.autograd``), so everything else you use is the package's.

What a ``Value`` holds: ``data`` (the number), ``grad`` (d output / d this, filled in by
backward), ``_prev`` (the inputs it was computed from, a tuple of Values) and ``_local``
(for each input, the local derivative d self / d input, already a number).
"""


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
