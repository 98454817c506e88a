"""Rehearsal: a bounded buffer of past examples, mixed into every new batch.

Two ways to decide what stays when the buffer is full:

- ``policy="reservoir"`` (Vitter's algorithm R): the n-th example offered
  (counting from 1) is kept with probability capacity / n and replaces a
  uniformly chosen slot. After any number of examples, every example seen so
  far is in the buffer with the same probability, capacity / n; large tasks
  take a proportional share.
- ``policy="balanced"``: every task seen so far gets an equal quota
  (capacity // n_tasks, the remainder to the earliest tasks) and runs its
  own reservoir inside it; when a new task arrives the older tasks are
  thinned by dropping uniformly random members (a uniform subset of a
  uniform sample is still uniform), so small tasks are not crowded out.

``mix(batch, ratio)`` replaces ``round(ratio * len(batch))`` rows of a batch
with samples from the buffer. The buffer lives on disk: ``save()`` writes
``<path>/buffer.json`` atomically (temp file, fsync, rename) with the
examples, the per-task counters and the RNG state, and ``ReplayBuffer.load``
continues exactly where it stopped.

An example is any JSON-able dict (here ``{"ids": [...], "mask": [...]}``).

Left out: generative replay, gradient-based selection (GEM / A-GEM's
projection, herding) and compression of the stored examples.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

POLICIES = ("reservoir", "balanced")
BUFFER_FILE = "buffer.json"

# ---------------------------------------------------------------- the buffer


class ReplayBuffer:
    """A reservoir or task-balanced buffer of at most ``capacity`` examples."""

    def __init__(self, capacity: int, policy: str = "reservoir", path: str | os.PathLike | None = None,
                 seed: int = 0):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"replay capacity must be a positive int, got {capacity!r}")
        if policy not in POLICIES:
            raise ValueError(f"replay policy must be one of {POLICIES}, got {policy!r}")
        self.capacity, self.policy = capacity, policy
        self.path = Path(path) if path is not None else None
        self.rng = random.Random(seed)
        self.items: list[dict] = []  # reservoir: (example, task) pairs stored as dicts
        self.per_task: dict[str, list[dict]] = {}  # balanced
        self.seen: dict[str, int] = {}  # examples offered per task
        self.n_seen = 0

    # -- filling
    def add(self, example: dict, task: str) -> None:
        """Offer one example of ``task`` to the buffer."""
        task = str(task)
        self.seen[task] = self.seen.get(task, 0) + 1
        self.n_seen += 1
        item = {"task": task, "example": example}
        if self.policy == "reservoir":
            if len(self.items) < self.capacity:
                self.items.append(item)
            else:
                j = self.rng.randrange(self.n_seen)  # uniform in [0, n)
                if j < self.capacity:
                    self.items[j] = item
            return
        if task not in self.per_task:
            self.per_task[task] = []
            self._rebalance()
        bucket, quota = self.per_task[task], self._quotas()[task]
        if len(bucket) < quota:
            bucket.append(item)
        else:
            j = self.rng.randrange(self.seen[task])
            if j < quota:
                bucket[j] = item

    def add_many(self, examples, task: str) -> None:
        for ex in examples:
            self.add(ex, task)

    def _quotas(self) -> dict[str, int]:
        tasks = list(self.per_task)
        base, extra = divmod(self.capacity, len(tasks))
        return {t: base + (1 if i < extra else 0) for i, t in enumerate(tasks)}

    def _rebalance(self) -> None:
        for t, q in self._quotas().items():
            bucket = self.per_task[t]
            if len(bucket) > q:
                self.per_task[t] = self.rng.sample(bucket, q)

    # -- reading
    def _all(self) -> list[dict]:
        if self.policy == "reservoir":
            return self.items
        return [it for bucket in self.per_task.values() for it in bucket]

    def __len__(self) -> int:
        return len(self._all())

    def counts(self) -> dict[str, int]:
        """How many stored examples belong to each task."""
        out: dict[str, int] = {}
        for it in self._all():
            out[it["task"]] = out.get(it["task"], 0) + 1
        return out

    def examples(self, task: str | None = None) -> list[dict]:
        return [it["example"] for it in self._all() if task is None or it["task"] == task]

    def sample(self, k: int, rng: random.Random | None = None) -> list[dict]:
        """``k`` examples drawn uniformly with replacement (an empty buffer raises)."""
        pool = self._all()
        if not pool:
            raise ValueError("the replay buffer is empty: add examples before sampling")
        rng = rng or self.rng
        return [pool[rng.randrange(len(pool))]["example"] for _ in range(k)]

    def mix(self, batch: list[dict], ratio: float, rng: random.Random | None = None) -> list[dict]:
        """``batch`` with its last ``round(ratio * len(batch))`` rows replaced by replayed examples."""
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"replay ratio must be in [0, 1), got {ratio}")
        k = round(ratio * len(batch))
        if k == 0 or len(self) == 0:
            return list(batch)
        return list(batch[:len(batch) - k]) + self.sample(k, rng)

    def nbytes(self) -> int:
        """Size of the stored examples as JSON (what ``save`` puts on disk for them)."""
        return len(json.dumps([it for it in self._all()]).encode())

    # -- disk
    def state(self) -> dict:
        return {"capacity": self.capacity, "policy": self.policy, "items": self.items,
                "per_task": self.per_task, "seen": self.seen, "n_seen": self.n_seen,
                "rng": _rng_to_json(self.rng.getstate())}

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the buffer atomically to ``<path>/buffer.json`` (default: the path it was made with)."""
        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise ValueError("ReplayBuffer.save needs a path (none was given at construction)")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / BUFFER_FILE
        tmp = folder / f".{BUFFER_FILE}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        """The buffer saved under folder ``path``."""
        target = Path(path) / BUFFER_FILE
        if not target.exists():
            raise FileNotFoundError(f"no {BUFFER_FILE} in {path}: not a saved replay buffer")
        try:
            s = json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{target} is not a valid replay buffer file ({e})") from None
        buf = cls(s["capacity"], s["policy"], path=path)
        buf.items, buf.per_task = s["items"], s["per_task"]
        buf.seen, buf.n_seen = s["seen"], s["n_seen"]
        buf.rng.setstate(_rng_from_json(s["rng"]))
        return buf


def _rng_to_json(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(state):
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
