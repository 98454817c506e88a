"""FLOPs per token (the MFU numerator): PaLM's 6N + 12 L C T, and a model's own count."""

import pytest
import torch

from week01_transformer import GPT, GPTConfig
from week03_training import TrainConfig, Trainer
from week03_training.flops import flops_per_token

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_palm_estimate_by_hand():
    """GPT with V=64, T=16, L=2, C=32, tied head: the matmul weights per layer are
    qkv 32*96+96, proj 32*32+32, fc 32*128+128, proj 128*32+32 (biases counted with them,
    as PaLM counts every parameter), plus 2 LayerNorms of 64 and the final one; the token
    table counts once as the tied head, the position table not at all."""
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32)
    model = GPT(cfg)
    per_layer = (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32) + 2 * 64
    n = 2 * per_layer + 64 + 64 * 32
    assert flops_per_token(model, 16) == 6 * n + 12 * 2 * 32 * 16


class _Counted(torch.nn.Module):
    """A model that counts its own FLOPs (as an MoE counts only its active experts)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def flops_per_token(self, block_size):
        return 1000.0 + block_size


def test_a_model_that_counts_itself_is_believed(tmp_path):
    model = _Counted()
    assert flops_per_token(model, 16) == 1016.0

    class Loader:
        def next_batch(self):
            return torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, 16, dtype=torch.long)

    trainer = Trainer(model, Loader(), TrainConfig(steps=1, batch_size=1, block_size=16,
                                                   progress=False), run_dir=tmp_path)
    assert trainer.flops_per_token == 1016.0  # what the MFU figure divides by
