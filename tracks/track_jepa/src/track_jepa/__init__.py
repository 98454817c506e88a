"""track_jepa: Joint-Embedding Predictive Architectures, I-JEPA on images and LLM-JEPA on text.

Images (Assran et al. 2023, I-JEPA):

- ``ViTConfig``, ``ViTEncoder``, ``patchify``: a ViT made of week01's ``Block`` with
  ``GPTConfig(causal=False)`` (bidirectional, week01's kernel registry), fixed 2-D
  sin-cos positions, ``forward(images, keep=None)`` over all or some patches
- ``MaskConfig``, ``MaskCollator``, ``block_shape``, ``multiblock_mask``: multi-block
  masking (4 targets of scale 0.15-0.2, aspect 0.75-1.5; a context block of scale
  0.85-1.0 minus the targets)
- ``IJEPAConfig``, ``IJEPA``, ``Predictor``, ``jepa_loss``: context encoder, EMA target
  encoder (no gradient), a narrow predictor with mask tokens + positions, the L2 /
  smooth-L1 loss on layer-normed target features (a week03 ``loss_fn``)
- ``ema_update``, ``ema_momentum``, ``EMAHook``: the target update as a week03 Trainer hook
- ``train_ijepa``, ``fit``: training through week03's ``Trainer``
- ``MAE``, ``mae_loss``, ``Supervised``, ``supervised_loss``: the baselines, same encoder
- ``embedding_std``, ``rankme``: collapse monitors; ``linear_probe``, ``embedding_plot``
- ``load_digits_images``, ``load_animal_mnist``, ``split``: images shipped in packages

Text (Huang, LeCun & Balestriero 2025, LLM-JEPA):

- ``TextJEPAConfig``, ``docstring_pairs``, ``jepa_lm_loss``, ``jepa_term``,
  ``run_text_experiment``: week04's Llama trained on pydocs with
  ``L_LM + lam * (1 - cos(Pred(Enc(docstring)), Enc(signature)))``, evaluated with
  week05's bpb and cloze

``python -m track_jepa.experiments --preset tiny|cpu|full``: every result table and plot.
"""

from track_jepa.baselines import (
    MAE,
    MAEConfig,
    Supervised,
    mae_loss,
    supervised_loss,
    train_mae,
    train_supervised,
)
from track_jepa.data import load_animal_mnist, load_digits_images, split, standardize
from track_jepa.ijepa import (
    IJEPA,
    IJEPA_PRESETS,
    EMAHook,
    IJEPAConfig,
    Predictor,
    ema_momentum,
    ema_update,
    fit,
    jepa_loss,
    train_ijepa,
)
from track_jepa.masks import MaskCollator, MaskConfig, block_shape, multiblock_mask, random_mask
from track_jepa.monitors import embedding_std, rankme, std_floor
from track_jepa.probe import embedding_plot, linear_probe
from track_jepa.text_jepa import (
    TEXT_PRESETS,
    TextJEPAConfig,
    docstring_pairs,
    jepa_lm_loss,
    jepa_term,
    run_text_experiment,
    train_text_model,
)
from track_jepa.vit import (
    VIT_PRESETS,
    ViTConfig,
    ViTEncoder,
    patchify,
    sincos_pos_embed,
    unpatchify,
)

__all__ = [
    "ViTConfig", "ViTEncoder", "VIT_PRESETS", "patchify", "unpatchify", "sincos_pos_embed",
    "MaskConfig", "MaskCollator", "block_shape", "multiblock_mask", "random_mask",
    "IJEPAConfig", "IJEPA_PRESETS", "IJEPA", "Predictor", "jepa_loss", "ema_update",
    "ema_momentum", "EMAHook", "fit", "train_ijepa",
    "MAEConfig", "MAE", "mae_loss", "Supervised", "supervised_loss", "train_mae",
    "train_supervised",
    "embedding_std", "rankme", "std_floor", "linear_probe", "embedding_plot",
    "load_digits_images", "load_animal_mnist", "split", "standardize",
    "TextJEPAConfig", "TEXT_PRESETS", "docstring_pairs", "jepa_lm_loss", "jepa_term",
    "train_text_model", "run_text_experiment",
]
