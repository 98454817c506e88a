"""Measure everything: one JSONL file per run, TensorBoard too when installed.

A run is a folder (``runs/<name>-<timestamp>/`` by default) holding
``meta.json`` (name, start time, config) and ``metrics.jsonl`` (one JSON
object per ``log`` call: ``step``, ``time`` seconds since the start, and the
scalars). ``make dashboard`` (``shared.dashboard``) turns every run into plots.
Benchmarks time calls with ``best_time`` and save their figures with
``save_benchmark`` under ``runs/bench/`` so the dashboard and ``make reflect``
can show them.

Left out: images, histograms and hyper-parameter search bookkeeping. Scalars
and a config are what every week needs; richer logging is TensorBoard's job.

>>> import tempfile
>>> with MetricsLogger(tempfile.mkdtemp()) as log:
...     log.log(step=1, loss=2.5)
>>> read_metrics(log.run_dir)[0]["loss"]
2.5
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
META_FILE = "meta.json"


def runs_root() -> Path:
    """Where runs live: ``$NANOCHAT_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("NANOCHAT_RUNS", "runs"))


def new_run_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """A fresh, not yet existing run folder ``<root>/<name>-<YYYYmmdd-HHMMSS>``."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"run name must be a plain folder name, got {name!r}")
    root = Path(root) if root is not None else runs_root()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = root / f"{name}-{stamp}-{i}"
    return path


def _scalar(key: str, value: Any) -> float | int:
    if hasattr(value, "item") and callable(value.item):  # torch / numpy scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"metric {key!r} must be a real number, got {type(value).__name__}: {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


class MetricsLogger:
    """Append scalars to ``<run_dir>/metrics.jsonl`` (and TensorBoard).

    ``tensorboard=None`` writes TensorBoard events when the ``tensorboard``
    package is importable, ``True`` requires it, ``False`` never writes them.
    Use it as a context manager, or call ``close()``.
    """

    def __init__(self, run_dir: str | os.PathLike, config: dict | None = None,
                 tensorboard: bool | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        meta = {
            "name": self.run_dir.name,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": config or {},
        }
        meta_path = self.run_dir / META_FILE
        if meta_path.exists():  # a resumed run keeps its history
            old = json.loads(meta_path.read_text())
            meta["started"] = old.get("started", meta["started"])
            meta["config"] = config or old.get("config", {})
        meta_path.write_text(json.dumps(meta, indent=2, default=str))
        self._file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._tb = None
        if tensorboard is not False:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if tensorboard:
                    raise ImportError("tensorboard=True but the tensorboard package is not installed; "
                                      "pip install tensorboard") from None
            else:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log(self, step: int | None = None, **scalars: Any) -> dict:
        """Record ``scalars`` at ``step``; returns the row written."""
        if self._file.closed:
            raise RuntimeError(f"MetricsLogger for {self.run_dir} is closed")
        row: dict[str, Any] = {"step": None if step is None else int(step),
                               "time": round(time.time() - self._t0, 6)}
        for key, value in scalars.items():
            if key in ("step", "time"):
                raise ValueError(f"{key!r} is reserved; pass it as step= or leave it to the logger")
            row[key] = _scalar(key, value)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "time") and math.isfinite(value):
                    self._tb.add_scalar(key, value, global_step=row["step"])
        return row

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All rows of a run, in order. A torn last line (a killed run) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS_FILE} in {run_dir}: not a run folder")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> int:
    """Drop the rows logged after ``step`` so a run resumed from a checkpoint at
    ``step`` logs those steps once; torn and step-less rows go too. The file is
    rewritten atomically. Returns how many rows were kept.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if row_step is not None and int(row_step) <= step:
            keep.append(line)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    os.replace(tmp, path)
    return len(keep)


def list_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """Every run folder under ``root`` (sorted by name)."""
    root = Path(root) if root is not None else runs_root()
    if not root.exists():
        return []
    return sorted(p.parent for p in root.rglob(METRICS_FILE))


def best_time(fn, repeats: int = 1) -> tuple[float, Any]:
    """(the fastest of ``repeats`` calls of ``fn()`` in seconds, the last call's result).

    The minimum, not the mean: on a shared machine noise only ever adds time.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def save_benchmark(name: str, results: dict, root: str | os.PathLike | None = None) -> Path:
    """Save a benchmark's figures as ``<root>/bench/<name>.json`` and return the path.

    ``name`` starts with the week (``"week00_engine"``) so ``make reflect``
    finds it. ``results`` is any JSON-able dict; by convention it holds
    ``rows`` (a list of dicts, one per measured system), ``summary`` (the
    headline ratios) and ``target_met`` (bool) where the issue set a target.
    """
    root = Path(root) if root is not None else runs_root()
    path = root / "bench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def load_benchmarks(root: str | os.PathLike | None = None, prefix: str = "") -> list[dict]:
    """Every saved benchmark whose name starts with ``prefix``."""
    root = Path(root) if root is not None else runs_root()
    out = []
    for path in sorted((root / "bench").glob(f"{prefix}*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return out
