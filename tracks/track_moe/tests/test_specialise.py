"""Routing metrics and tables: entropy against torch.distributions, counts against the pairs."""

import math

import pytest
import torch

from track_moe.specialise import (
    routing_counts,
    routing_entropy,
    topic_routing,
    topic_specialisation,
)
from track_moe.upcycle import UpcycleConfig, upcycle
from week04_modern_arch_tools import Llama, LlamaConfig

pytestmark = pytest.mark.stretch


@pytest.mark.parametrize("load", [[5, 0, 3, 1], [1, 1, 1, 1, 1, 1, 1, 1], [0, 7, 0, 0], [2.5, 0.5]])
def test_routing_entropy_equals_torch_categorical(load):
    t = torch.tensor(load, dtype=torch.float)
    want = float(torch.distributions.Categorical(probs=t / t.sum()).entropy()) / math.log(2)
    assert routing_entropy(t) == pytest.approx(want, abs=1e-6)


def test_balanced_and_collapsed_bounds():
    assert routing_entropy(torch.ones(8)) == pytest.approx(3.0)
    assert routing_entropy(torch.tensor([4.0, 4, 0, 0, 0, 0, 0, 0])) == pytest.approx(1.0)


def test_topic_table_rows_are_shares_of_every_pair():
    torch.manual_seed(0)
    dense = Llama(LlamaConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=32, intermediate_size=48))
    moe = upcycle(dense, UpcycleConfig(n_experts=4, top_k=2, router_std=1.0))
    windows = {"a": [torch.randint(0, 32, (2, 16))], "b": [torch.randint(32, 64, (3, 16))] * 2}
    counts = routing_counts(moe, windows["b"])
    assert counts.shape == (2, 4) and counts.sum(1).tolist() == [2 * 3 * 16 * 2] * 2
    topics, table = topic_routing(moe, windows)
    assert topics == ["a", "b"]
    torch.testing.assert_close(table.sum(1), torch.ones(2))
    torch.testing.assert_close(table[1], counts[-1] / counts[-1].sum())


def test_specialisation_is_the_mean_kl_from_the_average_row():
    """Reference: torch.nn.functional.kl_div (natural log) / ln 2, row by row."""
    table = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.25, 0.25, 0.5], [0.25, 0.25, 0.25, 0.25]],
                         dtype=torch.float64)
    mean = table.mean(0)
    want = sum(float(torch.nn.functional.kl_div(mean.log(), row, reduction="sum"))
               for row in table) / 3 / math.log(2)
    assert topic_specialisation(table) == pytest.approx(want, abs=1e-9)
    assert topic_specialisation(torch.full((3, 4), 0.25)) == 0.0
