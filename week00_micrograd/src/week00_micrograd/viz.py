"""Pictures of what the engine does: expression graphs and decision boundaries.

- ``to_dot(root)`` returns Graphviz DOT source for the graph behind a Value
  (one box per Value showing label, data and grad; one oval per operation);
- ``draw_graph(root, path)`` renders it to a PNG with the ``dot`` binary when
  it is installed, and otherwise with a small layered matplotlib drawing;
- ``plot_decision_boundary(model, X, y, path)`` shades a 2-D classifier's
  score over the plane and scatters the data on top.

Left out on purpose: interactive views and SVG/PDF output (``dot -Tsvg`` on
the DOT text gives those), and graphs of more than a few hundred nodes,
which no picture makes readable.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from week00_micrograd.engine import Value

__all__ = ["to_dot", "draw_graph", "plot_decision_boundary"]

MAX_NODES = 500  # beyond this a drawing is unreadable; refuse rather than hang


# ---------------------------------------------------------------------------
# DOT source


def _escape(text: str) -> str:
    """Backslash the characters that mean something inside a DOT record label."""
    for ch in '\\{}|<>"':
        text = text.replace(ch, "\\" + ch)
    return text


def _node_text(v: Value) -> str:
    name = f"{_escape(v.label)} | " if v.label else ""
    return f"{name}data {v.data:.4f} | grad {v.grad:.4f}"


def to_dot(root: Value, rankdir: str = "LR") -> str:
    """Graphviz DOT source for every node ``root`` depends on.

    Node ids are ``v0, v1, ...`` in topological order (inputs first), so the
    text is deterministic for a given expression.
    """
    if not isinstance(root, Value):
        raise TypeError(f"to_dot needs a Value, got {type(root).__name__}")
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT; got {rankdir!r}")
    order = root.topo()
    if len(order) > MAX_NODES:
        raise ValueError(f"graph has {len(order)} nodes; to_dot draws at most {MAX_NODES}")
    ids = {id(v): f"v{i}" for i, v in enumerate(order)}
    lines = ["digraph G {", f"  rankdir={rankdir};", '  node [fontname="Helvetica"];']
    for v in order:
        vid = ids[id(v)]
        lines.append(f'  {vid} [shape=record, label="{{ {_node_text(v)} }}"];')
        if v._op:
            lines.append(f'  {vid}_op [shape=ellipse, label="{_escape(v._op)}"];')
            lines.append(f"  {vid}_op -> {vid};")
            for child in v._prev:
                lines.append(f"  {ids[id(child)]} -> {vid}_op;")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# rendering


def _draw_with_matplotlib(root: Value, path: Path) -> None:
    """A layered drawing: column = depth from the inputs, one box per Value."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays

    order = root.topo()
    depth: dict[int, int] = {}
    for v in order:  # inputs come first, so children already have a depth
        depth[id(v)] = 1 + max((depth[id(c)] for c in v._prev), default=-1)
    columns: dict[int, list[Value]] = {}
    for v in order:
        columns.setdefault(depth[id(v)], []).append(v)
    pos = {}
    for d, col in columns.items():
        for j, v in enumerate(col):
            pos[id(v)] = (d * 2.2, -(j - (len(col) - 1) / 2) * 1.2)

    width = 2.2 * (max(columns) + 1)
    height = 1.2 * max(len(c) for c in columns.values()) + 1
    fig = Figure(figsize=(min(1 + 0.9 * width, 40), min(1 + 0.8 * height, 40)))
    ax = fig.subplots()
    for v in order:
        x1, y1 = pos[id(v)]
        for c in v._prev:
            x0, y0 = pos[id(c)]
            ax.annotate("", xy=(x1 - 0.55, y1), xytext=(x0 + 0.55, y0),
                        arrowprops={"arrowstyle": "->", "color": "0.5"})
        text = (f"{v.label}\n" if v.label else "") + f"{v.data:.4f}\ngrad {v.grad:.4f}"
        if v._op:
            text = f"[{v._op}]\n" + text
        ax.text(x1, y1, text, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#e8f0fe" if v._op else "#fff4d6"})
    ax.set_xlim(-1.0, width - 1.2)
    ax.set_ylim(-height / 2 - 0.5, height / 2 + 0.5)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_graph(root: Value, path: str | Path, renderer: str = "auto") -> str:
    """Render the graph behind ``root`` as a PNG at ``path``; return the renderer used.

    ``renderer`` is "auto" (Graphviz's ``dot`` when on PATH, else matplotlib),
    "graphviz" or "matplotlib".
    """
    if renderer not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(f"renderer must be auto, graphviz or matplotlib; got {renderer!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dot_bin = shutil.which("dot")
    if renderer == "graphviz" and dot_bin is None:
        raise RuntimeError("renderer='graphviz' but the `dot` binary is not on PATH; "
                           "install Graphviz or use renderer='matplotlib'")
    if renderer != "matplotlib" and dot_bin is not None:
        subprocess.run([dot_bin, "-Tpng", "-o", str(path)], input=to_dot(root), text=True,
                       check=True, capture_output=True)
        return "graphviz"
    if len(root.topo()) > MAX_NODES:
        raise ValueError(f"graph has more than {MAX_NODES} nodes; too many to draw")
    _draw_with_matplotlib(root, path)
    return "matplotlib"


# ---------------------------------------------------------------------------
# decision boundary


def plot_decision_boundary(model: Callable, X: Sequence[Sequence[float]], y: Sequence[int],
                           path: str | Path, grid: int = 60, title: str = "") -> Path:
    """Shade ``sign(model(point))`` over the data's bounding box and save a PNG.

    ``model`` maps a list of two numbers to a Value (or number) score; ``y``
    holds labels in {-1, +1}.
    """
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays

    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    pts = np.asarray(X, dtype=float)  # (N, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"X must be a list of 2-D points, got shape {pts.shape}")
    lo, hi = pts.min(axis=0) - 0.5, pts.max(axis=0) + 0.5
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    zz = np.empty((grid, grid))  # (rows = y, cols = x)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            s = model([float(xv), float(yv)])
            zz[i, j] = s.data if isinstance(s, Value) else float(s)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    ax.contourf(xs, ys, zz > 0, levels=[-0.5, 0.5, 1.5], colors=["#f4b6b6", "#b6cdf4"], alpha=0.8)
    ax.contour(xs, ys, zz, levels=[0.0], colors="k", linewidths=1)
    labels = np.asarray(y)
    ax.scatter(pts[labels < 0, 0], pts[labels < 0, 1], s=12, c="#c0392b", label="y = -1")
    ax.scatter(pts[labels > 0, 0], pts[labels > 0, 1], s=12, c="#2c5aa0", label="y = +1")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "decision boundary")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
