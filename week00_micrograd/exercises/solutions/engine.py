"""Worked solutions: the engine's topological order and backward pass (week00 exercises)."""


def topo(self) -> list:
    """Iterative depth-first order: a node is emitted once all of its inputs are."""
    order, seen = [], {self}
    stack = [(self, iter(self._prev))]
    while stack:
        node, inputs = stack[-1]
        for child in inputs:
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(child._prev)))
                break
        else:  # every input done: the node itself
            stack.pop()
            order.append(node)
    return order


def backward(self, grad: float = 1.0) -> None:
    """Zero the computed nodes, seed the output, apply the chain rule in reverse order."""
    order = self.topo()
    for node in order:
        if node._prev:
            node.grad = 0.0
    self.grad += float(grad)
    for node in reversed(order):
        for child, local in zip(node._prev, node._local):
            child.grad += local * node.grad
