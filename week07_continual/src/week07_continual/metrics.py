"""The accuracy matrix of a task stream and the four numbers read from it.

``R[i][j]`` is the score on task j's test set after training on tasks 0..i
(row i is evaluated right after task i). ``b[j]`` is the score of the model
before it saw any task of the stream (the row "-1"). With T tasks:

- average accuracy (GEM, Lopez-Paz & Ranzato 2017; Avalanche ``StreamAccuracy``
  at the end of the stream)::

      ACC = 1/T * sum_j R[T-1][j]

- backward transfer (GEM): how training on later tasks changed earlier ones;
  negative = forgetting::

      BWT = 1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j])

- forward transfer (GEM): how much earlier tasks help a task before it is
  trained on, against the untrained model (GEM uses a random init, Avalanche
  the model at the start of the stream; here ``b`` is the latter)::

      FWT = 1/(T-1) * sum_{j>=1} (R[j-1][j] - b[j])

- forgetting (Chaudhry et al. 2018, "Riemannian Walk"; Avalanche
  ``StreamForgetting``): the drop from the best score a task ever had to its
  final score, max-based, over every task but the last::

      f_j = max_{l<T-1} R[l][j] - R[T-1][j]          (l >= j: only after it was trained)
      F   = 1/(T-1) * sum_{j<T-1} f_j

For a metric where lower is better (loss, bits per byte) the matrix holds the
raw values and ``higher_is_better=False`` flips signs inside the formulas, so
BWT/FWT keep "negative = worse" and forgetting keeps "positive = forgot", in
the metric's own unit. ``plot_heatmap`` draws the matrix.

Left out: per-class accuracies, stream-level confusion matrices and the
"intransigence" measure of Chaudhry et al.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------- the matrix


@dataclass
class AccuracyMatrix:
    """``R[i][j]`` for T tasks plus the untrained row ``b``; NaN = not evaluated yet."""

    task_names: list[str]
    higher_is_better: bool = True
    unit: str = "accuracy"
    R: np.ndarray = field(default=None)  # (T, T)
    b: np.ndarray = field(default=None)  # (T,)

    def __post_init__(self):
        T = len(self.task_names)
        if T == 0:
            raise ValueError("an accuracy matrix needs at least one task")
        if len(set(self.task_names)) != T:
            raise ValueError(f"task names must be unique, got {self.task_names}")
        self.R = np.full((T, T), np.nan) if self.R is None else np.asarray(self.R, dtype=float)
        self.b = np.full(T, np.nan) if self.b is None else np.asarray(self.b, dtype=float)
        if self.R.shape != (T, T) or self.b.shape != (T,):
            raise ValueError(f"R must be ({T}, {T}) and b ({T},) for {T} tasks, got "
                             f"{self.R.shape} and {self.b.shape}")

    @property
    def T(self) -> int:
        return len(self.task_names)

    @property
    def sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    def record(self, after: int, task: int, value: float) -> None:
        """Store the score on ``task`` after training on task ``after`` (-1: before any)."""
        if not -1 <= after < self.T or not 0 <= task < self.T:
            raise IndexError(f"after must be in [-1, {self.T - 1}] and task in [0, {self.T - 1}], "
                             f"got after={after}, task={task}")
        if after == -1:
            self.b[task] = value
        else:
            self.R[after, task] = value

    def record_row(self, after: int, values) -> None:
        values = list(values)
        if len(values) != self.T:
            raise ValueError(f"a row holds {self.T} values, got {len(values)}")
        for j, v in enumerate(values):
            self.record(after, j, v)

    def _check_complete(self) -> None:
        if np.isnan(self.R).any():
            missing = [(int(i), int(j)) for i, j in zip(*np.where(np.isnan(self.R)))]
            raise ValueError(f"the accuracy matrix is incomplete: R{missing[:4]} not evaluated")

    # -- the metrics
    def acc(self) -> float:
        """Average accuracy at the end of the stream: mean of the last row."""
        self._check_complete()
        return float(self.R[-1].mean())

    def bwt(self) -> float:
        """Backward transfer: mean of R[T-1][j] - R[j][j] over j < T-1 (NaN for one task)."""
        self._check_complete()
        if self.T < 2:
            return math.nan
        diag = np.diag(self.R)[:-1]
        return float(self.sign * (self.R[-1, :-1] - diag).mean())

    def fwt(self) -> float:
        """Forward transfer: mean of R[j-1][j] - b[j] over j >= 1 (NaN without ``b``)."""
        self._check_complete()
        if self.T < 2 or np.isnan(self.b[1:]).any():
            return math.nan
        above = np.array([self.R[j - 1, j] for j in range(1, self.T)])
        return float(self.sign * (above - self.b[1:]).mean())

    def forgetting(self) -> float:
        """Max-based forgetting: mean over j < T-1 of best-ever R[l][j] (j <= l < T-1) - R[T-1][j]."""
        self._check_complete()
        if self.T < 2:
            return math.nan
        f = []
        for j in range(self.T - 1):
            past = self.sign * self.R[j:-1, j]  # scores after task j was learned, before the end
            f.append(past.max() - self.sign * self.R[-1, j])
        return float(np.mean(f))

    def summary(self) -> dict:
        return {"acc": self.acc(), "bwt": self.bwt(), "fwt": self.fwt(),
                "forgetting": self.forgetting()}

    # -- io
    def to_dict(self) -> dict:
        def clean(a):
            return [None if (isinstance(x, float) and math.isnan(x)) else x for x in a.tolist()]
        return {"task_names": list(self.task_names), "higher_is_better": self.higher_is_better,
                "unit": self.unit, "R": [clean(r) for r in self.R], "b": clean(self.b)}

    @classmethod
    def from_dict(cls, d: dict) -> AccuracyMatrix:
        def nan(a):
            return np.array([[math.nan if x is None else x for x in r] for r in a]) \
                if a and isinstance(a[0], list) else np.array([math.nan if x is None else x
                                                              for x in a], dtype=float)
        return cls(list(d["task_names"]), d["higher_is_better"], d.get("unit", "accuracy"),
                   nan(d["R"]), nan(d["b"]))

    def to_markdown(self, digits: int = 3) -> str:
        head = "| after \\ on | " + " | ".join(self.task_names) + " |"
        lines = [head, "|" + "---|" * (self.T + 1)]
        rows = [("(start)", self.b)] + [(n, r) for n, r in zip(self.task_names, self.R)]
        for name, row in rows:
            cells = ["" if math.isnan(v) else f"{v:.{digits}f}" for v in row]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


# ---------------------------------------------------------------- plot


def plot_heatmap(matrix: AccuracyMatrix, title: str = "", path=None, ax=None):
    """Draw R (rows: after training on task i; columns: evaluated on task j); returns the figure."""
    fig = None
    if ax is None:
        size = (1.2 * matrix.T + 2.5, 1.0 * matrix.T + 1.5)
        if path is None:  # to look at: a pyplot figure, which a notebook shows by itself
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=size)
        else:  # to save: no pyplot, so the caller's backend is left alone
            from matplotlib.figure import Figure

            fig = Figure(figsize=size)
            ax = fig.subplots()
    cmap = "viridis" if matrix.higher_is_better else "viridis_r"
    scale = dict(vmin=0.0, vmax=1.0) if matrix.unit == "exact_match" else {}
    im = ax.imshow(matrix.R, cmap=cmap, aspect="auto", **scale)
    ax.set_xticks(range(matrix.T), matrix.task_names, rotation=30, ha="right")
    ax.set_yticks(range(matrix.T), matrix.task_names)
    ax.set_xlabel(f"evaluated on ({matrix.unit})")
    ax.set_ylabel("after training on")
    for i in range(matrix.T):
        for j in range(matrix.T):
            v = matrix.R[i, j]
            if not math.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))  # dark text on bright cells, light on dark
                ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color=ink, fontsize=8)
    ax.set_title(title)
    (fig or ax.figure).colorbar(im, ax=ax)
    if fig is not None:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
    return fig or ax.figure
