"""Linear probes and embedding plots: how linearly readable is a frozen representation?

``linear_probe`` fits scikit-learn's ``LogisticRegression`` (multinomial, L2,
features standardised on the training split) on frozen features of the
training images and reports accuracy on held-out images: the standard way
self-supervised encoders are compared (I-JEPA table 1). ``embedding_plot``
draws a 2-D PCA or t-SNE of the features coloured by class.

Left out: fine-tuning probes, attentive probes, k-NN.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["linear_probe", "embedding_plot", "project_2d"]

# ---------------------------------------------------------------------------


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 3000
                 ) -> float:
    """Held-out accuracy of a logistic regression on frozen features (n, D)."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(_np(train_x), _np(train_y))
    return float(clf.score(_np(test_x), _np(test_y)))


def project_2d(features, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, D) -> (n, 2) by PCA or t-SNE."""
    x = StandardScaler().fit_transform(_np(features))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        return TSNE(n_components=2, random_state=seed, init="pca",
                    perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(x)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def embedding_plot(panels: dict, labels, path=None, method: str = "pca"):
    """One scatter per entry of ``panels`` (name -> features (n, D)), coloured by ``labels``;
    saved to ``path`` when given. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    y = _np(labels)
    for ax, (name, feats) in zip(axes[0], panels.items()):
        xy = project_2d(feats, method)
        ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10", s=4)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{method.upper()} of held-out embeddings (colour = class)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig
