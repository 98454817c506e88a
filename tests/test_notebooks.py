"""Every lesson notebook runs top to bottom in smoke mode (NANOCHAT_SMOKE=1), and is
committed executed: a learner can read its outputs and plots without running it.

``test_notebook`` executes each notebook in smoke mode and leaves the committed file
untouched. ``test_saved_outputs`` reads the committed file only: its first cell says at
which size the outputs were made (the stamp ``python -m shared.notebook --inplace``
writes), every code cell ran, in order and without an error, the cells that print or
plot have that output, the file stays under 1 MB, and no absolute path of the machine
that ran it leaked into the outputs. Refresh a notebook with ``make weekNN-notebook``.
"""

import ast
import hashlib
from pathlib import Path

import nbformat
import pytest

from shared.notebook import SAVED_RE, run_notebook

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in [*ROOT.glob("week[0-9][0-9]_*/*.ipynb"), *ROOT.glob("tracks/*/*.ipynb")]
                   if p.stem == p.parent.name)
MAX_BYTES = 1_000_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_notebook(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))  # keep runs/ out of the repo
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    seconds = run_notebook(path, smoke=True, timeout=300)
    assert seconds > 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "a smoke run rewrote the notebook"


# ---------------------------------------------------------------- the committed outputs


def _calls(node: ast.AST) -> list[str]:
    """Names of the calls made by statements that always run: the cell's top level and the
    bodies of its for/while/with blocks (not if/try branches, functions or classes)."""
    names = []
    for stmt in getattr(node, "body", []):
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            f = stmt.value.func
            names.append(f.id if isinstance(f, ast.Name) else
                         f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else "?")
        if isinstance(stmt, (ast.For, ast.While, ast.With)):
            names += _calls(stmt)
    return names


def _expects(cell) -> set[str]:
    """What a code cell must have produced: "text" when it prints or displays at its top
    level, "image" when it calls plt.show() or one of the repo's plotting helpers
    (``plot_*``, ``draw_graph``) as a statement of its own, whose figure a lesson shows."""
    try:
        tree = ast.parse("\n".join(line for line in cell.source.splitlines()
                                   if not line.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return set()
    calls = _calls(tree)
    want = set()
    if any(c in ("print", "display") for c in calls):
        want.add("text")
    if "plt.show" in calls or any(c.split(".")[-1].startswith("plot_") or
                                  c.split(".")[-1] == "draw_graph" for c in calls):
        want.add("image")
    return want


def _has(outputs, kind: str) -> bool:
    if kind == "image":
        return any("image/png" in o.get("data", {}) for o in outputs)
    return any(o.get("output_type") == "stream" or o.get("data") for o in outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_saved_outputs(path):
    size = path.stat().st_size
    assert size <= MAX_BYTES, f"{path.name} is {size / 1e6:.2f} MB (limit 1 MB): shrink its outputs"
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and SAVED_RE.search(first.source), (
        f"{path.name}: the first cell must say 'Saved outputs: full size ...' or 'smoke size ...'; "
        f"run `make {path.parent.name[:6]}-notebook`")
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code"
    counts = [c.execution_count for c in code]
    assert all(counts), f"{path.name}: {counts.count(None)} code cells were never run (saved without outputs?)"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        f"{path.name}: cells were not run top to bottom in one go: {counts}")
    assert any(c.outputs for c in code), f"{path.name} has no outputs"
    images = 0
    for i, cell in enumerate(code):
        first_line = cell.source.strip().splitlines()[0]
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: cell {first_line!r} saved an error: {errors[0].get('ename')}"
        for kind in _expects(cell):
            assert _has(cell.outputs, kind), f"{path.name}: code cell {i} ({first_line!r}) has no {kind} output"
        images += _has(cell.outputs, "image")
    if any("plt." in c.source or "plot" in c.source for c in code):
        assert images, f"{path.name} plots but saved no image"
    leaks = [str(ROOT), str(Path.home()), "/tmp/"]
    for cell in code:
        for out in cell.outputs:
            text = str(out.get("text", "")) + "".join(str(v) for k, v in out.get("data", {}).items()
                                                   if k.startswith("text/"))
            for leak in leaks:
                assert leak not in text, (
                    f"{path.name}: an output shows the machine path {leak!r}: {text[:200]!r}")
