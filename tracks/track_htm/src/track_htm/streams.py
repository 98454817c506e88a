"""Streams to learn from: NAB-format files read from local disk, and synthetic streams.

The Numenta Anomaly Benchmark (NAB) keeps each stream as ``data/<group>/<name>.csv`` with
the header ``timestamp,value`` and rows ``2014-07-01 00:00:00,10844``, and the labelled
anomaly windows of every stream in ``labels/combined_windows.json``:
``{"<group>/<name>.csv": [["2014-11-01 19:00:00.000000", "2014-11-02 06:30:00.000000"], ...]}``.

- ``read_nab_csv(path) -> Stream`` and ``read_nab_windows(path, key)``: strict readers; a
  missing file, a wrong header, an unparsable row (its line number), timestamps that go
  back in time, a window that ends before it starts or a key that is not there raise a
  ``StreamError`` that says what and where;
- ``write_nab(root, key, stream)``: the same layout written out (the tests and the
  experiments make their "real-shape" data this way: no network here);
- ``synthetic_stream(kind, n, ...)``: sine or sawtooth with a slowly drifting period and
  amplitude, noise, and injected anomalies (spikes, level shifts, a frozen stretch), each
  labelled with a window around it, at 5-minute timestamps;
- ``taxi_like_stream(n, ...)``: a NAB-taxi-shaped stream (30-minute steps, a daily and a
  weekly cycle) with anomalous days;
- ``window_mask(timestamps, windows)`` and ``window_scores(scores, stream, threshold)``:
  labels per step, and NAB-style window counts (a window is caught by any detection
  inside it; each detection outside every window is a false positive); ``roc_auc(labels,
  scores)``: the pointwise ROC AUC from ranks (ties count half), equal to scikit-learn's.

Left out: NAB's sigmoid-weighted score and its three application profiles.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Stream", "StreamError", "read_nab_csv", "read_nab_windows", "write_nab",
           "synthetic_stream", "taxi_like_stream", "window_mask", "window_scores", "roc_auc"]

HEADER = ["timestamp", "value"]
_TS_FMT = "%Y-%m-%d %H:%M:%S"


class StreamError(ValueError):
    """A stream or label file that cannot be read, with the place that is wrong."""


@dataclass
class Stream:
    timestamps: np.ndarray               # (T,) datetime64[s]
    values: np.ndarray                   # (T,) float64
    windows: list = field(default_factory=list)   # [(start, end)] datetime64[s], inclusive
    name: str = "stream"

    def __len__(self) -> int:
        return len(self.values)

    @property
    def labels(self) -> np.ndarray:
        return window_mask(self.timestamps, self.windows)


# --------------------------------------------------------------------------- NAB files


def _parse_ts(text: str, where: str) -> np.datetime64:
    try:
        return np.datetime64(text.strip().replace(" ", "T"), "s")
    except ValueError:
        raise StreamError(f"{where}: cannot read the timestamp {text!r} "
                          "(expected 'YYYY-MM-DD HH:MM:SS')") from None


def read_nab_csv(path) -> Stream:
    path = Path(path)
    if not path.is_file():
        raise StreamError(f"{path}: no such file")
    ts, vs = [], []
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != HEADER:
            raise StreamError(f"{path}:1: the header must be 'timestamp,value', got {header!r}")
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise StreamError(f"{path}:{line}: expected 2 fields, got {len(row)}: {row!r}")
            t = _parse_ts(row[0], f"{path}:{line}")
            try:
                v = float(row[1])
            except ValueError:
                raise StreamError(f"{path}:{line}: the value {row[1]!r} is not a number") from None
            if not np.isfinite(v):
                raise StreamError(f"{path}:{line}: the value {row[1]!r} is not finite")
            if ts and t < ts[-1]:
                raise StreamError(f"{path}:{line}: timestamp {row[0]!r} is before the previous row's")
            ts.append(t)
            vs.append(v)
    if not vs:
        raise StreamError(f"{path}: no rows after the header")
    return Stream(np.array(ts, dtype="datetime64[s]"), np.array(vs, dtype=np.float64), [], path.stem)


def read_nab_windows(path, key: str) -> list:
    path = Path(path)
    if not path.is_file():
        raise StreamError(f"{path}: no such file")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StreamError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(table, dict):
        raise StreamError(f"{path}: expected an object of 'group/name.csv' -> windows")
    if key not in table:
        raise StreamError(f"{path}: no windows for {key!r}; keys: {sorted(table)[:5]}...")
    out = []
    for i, w in enumerate(table[key]):
        if not (isinstance(w, list) and len(w) == 2):
            raise StreamError(f"{path}: {key} window {i} must be [start, end], got {w!r}")
        a, b = (_parse_ts(x.split(".")[0], f"{path}: {key} window {i}") for x in w)
        if b < a:
            raise StreamError(f"{path}: {key} window {i} ends before it starts: {w!r}")
        out.append((a, b))
    return out


def write_nab(root, key: str, stream: Stream) -> tuple[Path, Path]:
    """Write ``stream`` as ``root/data/<key>`` and add its windows to
    ``root/labels/combined_windows.json``; returns both paths."""
    root = Path(root)
    data, labels = root / "data" / key, root / "labels" / "combined_windows.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    labels.parent.mkdir(parents=True, exist_ok=True)
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for t, v in zip(stream.timestamps, stream.values):
            w.writerow([str(t).replace("T", " "), f"{v:.6g}"])
    table = json.loads(labels.read_text()) if labels.is_file() else {}
    table[key] = [[str(a).replace("T", " ") + ".000000", str(b).replace("T", " ") + ".000000"]
                  for a, b in stream.windows]
    labels.write_text(json.dumps(table, indent=2))
    return data, labels


# --------------------------------------------------------------------------- synthetic


def _windows_around(ts: np.ndarray, idx, half: int) -> list:
    T = len(ts)
    return [(ts[max(0, i - half)], ts[min(T - 1, i + half)]) for i in sorted(idx)]


def synthetic_stream(kind: str = "sine", n: int = 3000, period: float = 40.0, drift: float = 0.3,
                     noise: float = 0.005, n_anomalies: int = 4, seed: int = 0) -> Stream:
    """A periodic stream whose period grows by ``drift`` (a share) and whose amplitude
    shrinks by half that over the stream, with ``n_anomalies`` injected events in the
    second half (spike, level shift, frozen value: cycled), each in a window of +- period/2."""
    if kind not in ("sine", "sawtooth"):
        raise ValueError(f"kind must be 'sine' or 'sawtooth', got {kind!r}")
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    p = period * (1 + drift * t / n)                          # (T,) the drifting period
    phase = 2 * np.pi * np.cumsum(1.0 / p)
    amp = 1.0 - 0.5 * drift * t / n
    base = np.sin(phase) if kind == "sine" else (np.mod(phase / (2 * np.pi), 1.0) * 2 - 1)
    v = 0.5 + 0.4 * amp * base + noise * rng.standard_normal(n)
    where = np.sort(rng.choice(np.arange(n // 2, n - int(period)), size=n_anomalies, replace=False))
    for j, i in enumerate(where):
        L = int(period // 4)
        if j % 3 == 0:
            v[i] += 0.45                                       # spike
        elif j % 3 == 1:
            v[i:i + L] += 0.25                                 # level shift
        else:
            v[i:i + L] = v[i]                                  # frozen sensor
    ts = np.datetime64("2026-01-01T00:00:00") + (t * 300).astype("timedelta64[s]")
    return Stream(ts, np.clip(v, 0, 1), _windows_around(ts, where, int(period // 2)), f"{kind}_drift")


def taxi_like_stream(n: int = 3000, n_anomalies: int = 3, noise: float = 0.02, seed: int = 0) -> Stream:
    """NAB-taxi-shaped: 30-minute steps, a daily double peak and quieter weekends, and
    ``n_anomalies`` anomalous half-days (demand collapses or surges) in the second half."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    ts = np.datetime64("2014-07-07T00:00:00") + (t * 1800).astype("timedelta64[s]")  # a Monday
    hour = (t % 48) / 2.0
    day = (t // 48) % 7
    daily = 0.6 * np.exp(-((hour - 9) / 2.5) ** 2) + 0.9 * np.exp(-((hour - 19) / 3.0) ** 2)
    week = np.where(day >= 5, 0.7, 1.0)
    v = 10000 + 15000 * daily * week + 800 * rng.standard_normal(n) * noise / 0.05
    starts = np.sort(rng.choice(np.arange(n // 2, n - 48, 48), size=n_anomalies, replace=False))
    for j, s in enumerate(starts):
        v[s + 12:s + 36] *= 0.4 if j % 2 == 0 else 1.6
    return Stream(ts, v, _windows_around(ts, starts + 24, 24), "taxi_like")


# --------------------------------------------------------------------------- scoring


def window_mask(timestamps: np.ndarray, windows) -> np.ndarray:
    """bool (T,): inside some window (inclusive)."""
    m = np.zeros(len(timestamps), dtype=bool)
    for a, b in windows:
        m |= (timestamps >= a) & (timestamps <= b)
    return m


def window_scores(scores: np.ndarray, stream: Stream, threshold: float, skip: int = 0) -> dict:
    """Detections = steps (after ``skip``) with score >= threshold. Returns windows caught,
    windows total, false positives (detections outside every window) and recall."""
    det = np.asarray(scores) >= threshold
    det[:skip] = False
    caught = sum(bool(det[(stream.timestamps >= a) & (stream.timestamps <= b)].any())
                 for a, b in stream.windows)
    fp = int((det & ~stream.labels).sum())
    n = len(stream.windows)
    return {"caught": caught, "windows": n, "false_pos": fp, "recall": caught / n if n else 0.0}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a labelled step > score of an unlabelled one), ties counted half (the
    Mann-Whitney U over n_pos * n_neg); nan when one class is empty."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average rank (1-based) of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
