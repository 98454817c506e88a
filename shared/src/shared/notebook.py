"""Execute a lesson notebook, in smoke mode (CI) or at full size (a learner).

``python -m shared.notebook week00_micrograd/week00_micrograd.ipynb`` runs it
with ``NANOCHAT_SMOKE=1`` and the notebook's folder as working directory, and
raises on the first failing cell, naming it. ``--inplace`` runs at full size and
saves the outputs into the file (what ``make weekNN-notebook`` does).

Left out: parameterised notebooks (papermill) and HTML export; a notebook
reads its sizes through ``shared.smoke`` and nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def run_notebook(path: str | os.PathLike, smoke: bool = True, inplace: bool = False,
                 timeout: int = 1800) -> float:
    """Execute every cell of ``path``; return the seconds it took.

    Raises ``RuntimeError`` naming the notebook and the failing cell's first line.
    """
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.exists() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"no notebook at {path} (expected an existing .ipynb file)")
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("NANOCHAT_SMOKE")
    os.environ["NANOCHAT_SMOKE"] = "1" if smoke else "0"
    # the kernel must use ipykernel's inline backend so figures land in the outputs;
    # an inherited MPLBACKEND=Agg (set by the Makefile for scripts) would swallow them
    old_backend = os.environ.pop("MPLBACKEND", None)
    t0 = time.time()
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent.resolve())}})
        client.execute()
    except CellExecutionError as e:
        raise RuntimeError(f"notebook {path} failed:\n{e}") from None
    finally:
        if old_backend is not None:
            os.environ["MPLBACKEND"] = old_backend
        if old is None:
            os.environ.pop("NANOCHAT_SMOKE", None)
        else:
            os.environ["NANOCHAT_SMOKE"] = old
    if inplace:
        nbformat.write(nb, path)
    return time.time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Execute a lesson notebook top to bottom.")
    ap.add_argument("notebook", help="path of the .ipynb file")
    ap.add_argument("--inplace", action="store_true",
                    help="run at full size (no smoke mode) and save the outputs into the file")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = ap.parse_args(argv)
    try:
        secs = run_notebook(args.notebook, smoke=not args.inplace, inplace=args.inplace,
                            timeout=args.timeout)
    except (FileNotFoundError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.notebook}: ok in {secs:.1f}s ({'full size, saved' if args.inplace else 'smoke mode'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
