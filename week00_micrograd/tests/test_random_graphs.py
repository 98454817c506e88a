"""Random expression graphs, run on ``Value`` and on PyTorch, must agree (float64).

A seeded generator writes a small program: leaves, then ``n_ops`` operations
whose operands are picked among all earlier results (so nodes are reused and
the graph has diamonds). A seeded generator rather than hypothesis: the cases
are the same on every run and nothing is written outside tmp (hypothesis keeps
a cache folder in the working directory). Domains are guarded with the Value's own numbers
(log only of positives, division only by |x| > 0.1, ...). The same program is
executed on Values and on torch tensors; the output is the sum of the last few
results, and we compare it and every leaf's gradient.
"""

from __future__ import annotations

import random

import pytest
import torch

from week00_micrograd import Value

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

UNARY = ("neg", "exp", "log", "tanh", "relu", "sigmoid", "pow", "const")
BINARY = ("add", "sub", "mul", "div")


def make_program(seed: int, n_leaves: int = 4, n_ops: int = 40) -> tuple[list[float], list]:
    rng = random.Random(seed)
    leaves = [rng.uniform(-2.0, 2.0) for _ in range(n_leaves)]
    vals = [Value(x) for x in leaves]  # used only to guard domains while writing
    prog = []
    while len(prog) < n_ops:
        # prefer recent results so the graph gets deep, not just wide
        i = max(0, len(vals) - 1 - int(rng.expovariate(0.3)))
        x = vals[i]
        if rng.random() < 0.5:
            op = rng.choice(BINARY)
            j = rng.randrange(len(vals))
            y = vals[j]
            if op == "div" and abs(y.data) < 0.1:
                continue
            instr = (op, i, j)
        else:
            op = rng.choice(UNARY)
            if op == "exp" and x.data > 5:
                continue
            if op == "log" and x.data <= 0.05:
                continue
            if op == "pow":
                k = rng.choice((2, 3, -1, 0.5, 1.5)) if x.data > 0.1 else rng.choice((2, 3))
                instr = (op, i, k)
            elif op == "const":
                instr = (op, i, rng.choice((-2.0, 0.5, 3.0)))
            else:
                instr = (op, i)
        vals.append(execute_one(instr, vals))
        if abs(vals[-1].data) > 1e6:  # keep numbers tame so the comparison is meaningful
            vals.pop()
            continue
        prog.append(instr)
    return leaves, prog


def execute_one(instr, vals):
    op, i = instr[0], instr[1]
    x = vals[i]
    if op in BINARY:
        y = vals[instr[2]]
        if op == "add":
            return x + y
        if op == "sub":
            return x - y
        return x * y if op == "mul" else x / y
    if op == "neg":
        return -x
    if op == "pow":
        return x ** instr[2]
    if op == "const":
        return x * instr[2] + instr[2]
    return getattr(x, op)()


def run(leaf_objs, prog):
    vals = list(leaf_objs)
    for instr in prog:
        vals.append(execute_one(instr, vals))
    out = vals[-1]
    for v in vals[-5:-1]:
        out = out + v
    return out


def check_seed(seed: int, tol: float) -> int:
    leaves, prog = make_program(seed)
    ours = [Value(x) for x in leaves]
    out = run(ours, prog)
    out.backward()
    theirs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in leaves]
    ref = run(theirs, prog)
    ref.backward()
    ref_grads = [0.0 if t.grad is None else t.grad.item() for t in theirs]
    assert out.data == pytest.approx(ref.item(), rel=tol, abs=tol), (seed, prog)
    assert [v.grad for v in ours] == pytest.approx(ref_grads, rel=tol, abs=tol), (seed, prog)
    return len(out.topo())


@pytest.mark.parametrize("seed", range(100))
def test_seeded_random_graph_matches_torch(seed, tol):
    n_nodes = check_seed(seed, tol)
    assert n_nodes >= 15  # the output really depends on a graph, not on a couple of nodes
