"""Execute a lesson notebook, in smoke mode (CI) or at full size (a learner).

``python -m shared.notebook week00_micrograd/week00_micrograd.ipynb`` runs it
with ``NANOCHAT_SMOKE=1`` and the notebook's folder as working directory, and
raises on the first failing cell, naming it. ``--inplace`` runs at full size and
saves the outputs into the file (what ``make weekNN-notebook`` does);
``--inplace --smoke`` saves a smoke-size run instead. ``--out PATH`` saves the run to
``PATH`` and leaves the tracked file alone (``make weekNN-notebook OUT=PATH``): a
learner's own copy, at full size or, with ``--smoke``, at smoke size.

A saved notebook is kept small and stable, so a learner can read it on GitHub
without running it and a re-run does not churn the diff:

- figures are drawn at a modest dpi (``FIGURE_DPI``), and every PNG output is
  re-encoded with Pillow (wider than ``MAX_PNG_WIDTH`` scaled down, then a
  256-colour palette, ``optimize``), keeping whichever file is smaller;
- progress bars (and tqdm's "IProgress not found" warning) are dropped from
  stderr, carriage-return redraws collapse to their final line, and text
  outputs longer than ``MAX_TEXT_LINES`` lines keep their head and tail;
- the kernel gets a fresh ``TMPDIR`` (deleted afterwards), ``PYTHONHASHSEED=0``
  and, unless set, ``NANOCHAT_RUNS`` = the repository's ``runs/`` (where
  ``make dashboard`` and ``make baseline`` keep runs); in the outputs that
  TMPDIR, the repository root and the home folder read ``$TMPDIR``, ``<repo>``
  and ``~``, the random part of folders made in TMPDIR ``XXXXXXXX``; no
  per-cell timestamps;
- the first cell (a markdown cell, added if missing) gets a line
  ``> Saved outputs: full size, ran in 2.1 min on a 2-core CPU. ...``, so the
  reader knows what the numbers are; tests/test_notebooks.py checks it is there.

Left out: parameterised notebooks (papermill) and HTML export; a notebook
reads its sizes through ``shared.smoke`` and nothing else. Seeding stays in the
notebooks themselves (``seed_everything(0)`` in their first code cell).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

FIGURE_DPI = 80          # matplotlib's default is 100; 80 keeps 10 pt labels legible
MAX_PNG_WIDTH = 1000     # pixels; wider images (e.g. saved at dpi 110 by a package) are scaled
PNG_COLOURS = 256        # palette size; plots use few colours, colormaps fit in 256
MAX_TEXT_LINES = 120     # longer text outputs keep the first 80 and the last 30 lines
MAX_TEXT_CHARS = 20_000

SAVED_RE = re.compile(r"Saved outputs: (full|smoke) size")
_SAVED_LINE = re.compile(r"^.*Saved outputs:.*$\n?", re.MULTILINE)
# a tqdm line: "desc:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]" or "12it [00:00, 5.2it/s]"
_BAR = re.compile(r"\d+%\|.*\||\d+(\.\d+)?[kMG]?it \[|[0-9.?]+ ?(it|s|[a-zA-Z]+)/(s|it)\]")

# warnings that only say which optional packages this machine lacks
_NOISE = re.compile(r"^.*TqdmWarning: IProgress not found.*\n(\s+from \.autonotebook import .*\n)?",
                    re.MULTILINE)

# ---------------------------------------------------------------- running


def _set_environ(values: dict[str, str | None]) -> None:
    """Set each variable (None removes it)."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _environ(**values: str | None):
    """Set (or, for None, remove) environment variables for the kernel, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(old)


def run_notebook(path: str | os.PathLike, smoke: bool = True, inplace: bool = False,
                 timeout: int = 1800, out: str | os.PathLike | None = None) -> float:
    """Execute every cell of ``path``; return the seconds it took.

    With ``inplace`` the outputs are compacted (see the module docstring), the first
    cell is stamped with the size and the time, and the file is rewritten; with
    ``out`` the same is written to ``out`` instead (its folder is made if needed) and
    ``path`` is left as it was; with neither the run is not saved. Raises ``RuntimeError`` naming the notebook and
    the failing cell's first line.
    """
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.exists() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"no notebook at {path} (expected an existing .ipynb file)")
    if out is not None:
        out = Path(out)
        if inplace:
            raise ValueError("give inplace or out, not both (out leaves the notebook alone)")
        if out.suffix != ".ipynb":
            raise ValueError(f"out must be a .ipynb path, got {str(out)!r}")
    nb = nbformat.read(path, as_version=4)
    tmp = Path(tempfile.mkdtemp(prefix="nanochat-nb-"))
    rc = tmp / "matplotlibrc"
    rc.write_text(f"figure.dpi: {FIGURE_DPI}\n")
    root = _repo_root(path)
    # runs go where `make dashboard` and week05's find_baseline look: the repository's runs/,
    # not runs/ inside the notebook's folder (the kernel's working directory)
    runs = os.environ.get("NANOCHAT_RUNS") or (str(root / "runs") if root else None)
    t0 = time.time()
    try:
        # the kernel must use ipykernel's inline backend so figures land in the outputs;
        # an inherited MPLBACKEND=Agg (set by the Makefile for scripts) would swallow them
        with _environ(NANOCHAT_SMOKE="1" if smoke else "0", MPLBACKEND=None,
                      MATPLOTLIBRC=str(rc), TMPDIR=str(tmp), PYTHONHASHSEED="0",
                      NANOCHAT_RUNS=runs):
            client = nbclient.NotebookClient(
                nb, timeout=timeout, kernel_name="python3", record_timing=False,
                resources={"metadata": {"path": str(path.parent.resolve())}})
            client.execute()
    except CellExecutionError as e:
        raise RuntimeError(f"notebook {path} failed:\n{e}") from None
    finally:
        made = sorted(p.name for p in tmp.iterdir() if p.name != rc.name) if tmp.exists() else []
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.time() - t0
    if inplace or out is not None:
        compact_notebook(nb, replacements=_replacements(tmp, path, made))
        stamp_saved_outputs(nb, smoke=smoke, seconds=seconds, name=path.parent.name)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out if out is not None else path)
    return seconds


def _repo_root(path: Path) -> Path | None:
    return next((p for p in path.resolve().parents if (p / ".git").exists()), None)


def _replacements(tmp: Path, path: Path, made: list[str] = ()) -> list[tuple[str, str]]:
    """Machine-specific strings in outputs and what they become, in the order to apply them:
    the kernel's TMPDIR, the random part of the folders the notebook made in it with
    ``tempfile.mkdtemp(prefix=...)`` (``$TMPDIR/week01-char-XXXXXXXX``), the repository
    root, the home folder."""
    pairs = [(str(tmp.resolve()), "$TMPDIR"), (str(tmp), "$TMPDIR")]
    for name in made:  # mkdtemp/mkstemp names: prefix + 8 random characters (+ suffix)
        m = re.fullmatch(r"(tmp|.*[-_.])([a-z0-9_]{8})(\.\w+)?", name)
        if m:
            pairs.append((f"$TMPDIR/{name}", f"$TMPDIR/{m.group(1)}XXXXXXXX{m.group(3) or ''}"))
    root = _repo_root(path)
    if root is not None:
        pairs.append((str(root), "<repo>"))
    pairs.append((str(Path.home()), "~"))
    seen, out = set(), []
    for old, new in pairs:
        if len(old) > 1 and old not in seen:
            seen.add(old)
            out.append((old, new))
    return out


# ---------------------------------------------------------------- compacting outputs


def shrink_png(data: bytes, max_width: int = MAX_PNG_WIDTH, colours: int = PNG_COLOURS) -> bytes:
    """The same picture as a smaller PNG: scaled to ``max_width``, palette, optimized.

    Returns ``data`` itself when the re-encoded file is not smaller (and no scaling
    was needed). Deterministic: the same input gives the same bytes.
    """
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    scaled = im.width > max_width
    if scaled:
        im = im.resize((max_width, max(1, round(im.height * max_width / im.width))),
                       Image.Resampling.LANCZOS)
    if im.mode not in ("RGB", "RGBA", "L", "P"):
        im = im.convert("RGBA")
    if im.mode == "RGBA" and im.getchannel("A").getextrema()[0] == 255:
        im = im.convert("RGB")  # opaque: the alpha channel carries nothing
    if im.mode in ("RGB", "RGBA"):
        method = Image.Quantize.MEDIANCUT if im.mode == "RGB" else Image.Quantize.FASTOCTREE
        im = im.quantize(colours, method=method, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    out = buf.getvalue()
    return out if scaled or len(out) < len(data) else data


def clean_stream(text: str, stderr: bool = False) -> str:
    """Collapse carriage-return redraws to the final state of each line; on stderr
    drop the lines that are progress bars."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    if stderr:
        lines = [line for line in lines if not _BAR.search(line)]
        lines = _NOISE.sub("", "\n".join(lines)).split("\n")
    return "\n".join(lines)


def trim_text(text: str, max_lines: int = MAX_TEXT_LINES, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Keep the head and the tail of a long output, with a line saying what was cut."""
    lines = text.split("\n")
    if len(lines) > max_lines:
        head, tail = (max_lines * 2) // 3, max_lines // 4
        cut = len(lines) - head - tail
        lines = [*lines[:head], f"[... {cut} lines trimmed by shared.notebook ...]", *lines[-tail:]]
        text = "\n".join(lines)
    if len(text) > max_chars:
        head, tail = (max_chars * 2) // 3, max_chars // 4
        cut = len(text) - head - tail
        text = f"{text[:head]}\n[... {cut} characters trimmed by shared.notebook ...]\n{text[-tail:]}"
    return text


def _scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def compact_notebook(nb, replacements: list[tuple[str, str]] = ()) -> None:
    """Shrink the outputs of an executed notebook in place (see the module docstring)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = clean_stream(_text(out["text"]), stderr=out.get("name") == "stderr")
                text = trim_text(_scrub(text, replacements))
                if not text.strip():
                    continue  # nothing but progress bars
                out["text"] = text
            elif out.get("output_type") == "error":
                out["traceback"] = [_scrub(line, replacements) for line in out.get("traceback", [])]
            for mime, value in out.get("data", {}).items():
                if mime == "image/png":
                    png = shrink_png(base64.b64decode(_text(value)))
                    out["data"][mime] = base64.b64encode(png).decode("ascii")
                elif mime.startswith("text/"):
                    out["data"][mime] = trim_text(_scrub(_text(value), replacements))
            kept.append(out)
        cell["outputs"] = kept


def _machine() -> str:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    where = f"a {cores}-core CPU"
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            where += f" with a {torch.cuda.get_device_name(0)}"
    return where


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{max(1, round(seconds)):.0f} s"
    return f"{seconds / 60:.1f} min"


def stamp_saved_outputs(nb, smoke: bool, seconds: float, name: str = "weekNN_topic",
                        machine: str | None = None) -> str:
    """Write the "Saved outputs:" line into the first cell (a markdown cell, added if
    missing) and return it. Replaces an earlier stamp instead of adding a second."""
    import nbformat

    week = re.match(r"week\d\d", name)
    rerun = f"make {week.group()}-notebook" if week else f"python -m shared.notebook {name}.ipynb --inplace"
    line = (f"> Saved outputs: {'smoke' if smoke else 'full'} size, ran in {_duration(seconds)} "
            f"on {machine or _machine()}.")
    if smoke:
        line += (" Smoke size (`NANOCHAT_SMOKE=1`) shrinks every size, so the numbers below show"
                 f" the mechanics, not the results; `{rerun}` runs it at full size.")
    else:
        line += f" `{rerun}` runs it again."
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(line))
        return line
    cell = nb.cells[0]
    source = _SAVED_LINE.sub("", cell.source).strip("\n")
    lines = source.split("\n")
    if lines and lines[0].startswith("#"):  # after the title
        rest = "\n".join(lines[1:]).strip("\n")
        cell.source = f"{lines[0]}\n\n{line}" + (f"\n\n{rest}" if rest else "")
    else:
        cell.source = f"{line}\n\n{source}" if source else line
    return line


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Execute a lesson notebook top to bottom.")
    ap.add_argument("notebook", help="path of the .ipynb file")
    ap.add_argument("--inplace", action="store_true",
                    help="run at full size (no smoke mode) and save the outputs into the file")
    ap.add_argument("--out", default=None, metavar="PATH",
                    help="run at full size (or --smoke) and save to PATH; the notebook is untouched")
    ap.add_argument("--smoke", action="store_true",
                    help="with --inplace or --out: run and save at smoke size instead of full size")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = ap.parse_args(argv)
    saving = args.inplace or args.out is not None
    smoke = args.smoke or not saving
    try:
        secs = run_notebook(args.notebook, smoke=smoke, inplace=args.inplace, timeout=args.timeout,
                            out=args.out)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    size = "smoke size" if smoke else "full size"
    where = f", saved to {args.out}" if args.out else (", saved" if args.inplace else "")
    print(f"{args.notebook}: ok in {secs:.1f}s ({size}{where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
