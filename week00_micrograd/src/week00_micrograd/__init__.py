"""week00_micrograd: a scalar autograd engine and a tiny neural-net library, from scratch.

Public API:

- ``Value``: a scalar with autograd (``+ - * / **``, ``exp log tanh relu sigmoid``,
  ``backward()``); ``dot`` and ``vsum`` are fused n-ary nodes for speed, ``cross_entropy``
  the classifier's loss as one node;
- ``Module``, ``Neuron``, ``Layer``, ``MLP``: a micrograd-style neural-net library;
- ``SGD``, ``AdamW``, ``cosine_lr``, ``clip_grad_norm``: optimizers, schedule and clipping
  matching ``torch.optim`` / ``torch.nn.utils`` step for step;
- ``make_moons``, ``train_moons``, ``TrainConfig``, ``example_graph``: the two-moons demo
  (``python -m week00_micrograd.train``);
- ``to_dot``, ``draw_graph``, ``plot_decision_boundary``: pictures.
"""

from week00_micrograd.engine import Value, cross_entropy, dot, vsum
from week00_micrograd.moons import (
    TrainConfig,
    TrainResult,
    example_graph,
    hinge_loss,
    make_moons,
    train_moons,
)
from week00_micrograd.nn import MLP, Layer, Module, Neuron
from week00_micrograd.optim import SGD, AdamW, clip_grad_norm, cosine_lr
from week00_micrograd.viz import draw_graph, plot_decision_boundary, to_dot

__all__ = [
    "Value", "cross_entropy", "dot", "vsum",
    "Module", "Neuron", "Layer", "MLP",
    "SGD", "AdamW", "clip_grad_norm", "cosine_lr",
    "TrainConfig", "TrainResult", "make_moons", "hinge_loss", "train_moons", "example_graph",
    "to_dot", "draw_graph", "plot_decision_boundary",
]
