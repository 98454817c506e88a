"""Saving and loading adapters alone (shared checkpoint format), with clear mismatch errors."""

import pytest
import torch

from shared import CheckpointError, read_meta
from week01_transformer import GPT, GPTConfig
from week06_lora import (
    inject_lora,
    load_adapter,
    lora_layers,
    lora_state_dict,
    save_adapter,
    set_active_adapters,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def fresh_gpt(**overrides):
    torch.manual_seed(0)  # same seed as the gpt fixture: same base weights
    return GPT(GPTConfig.preset("test", **overrides)).eval()


def test_lora_state_dict_holds_the_adapter_alone(gpt, randomize):
    inject_lora(gpt, r=4, alpha=8, adapter="a", dora=True)
    inject_lora(gpt, r=2, alpha=8, adapter="b", targets=["mlp.fc"])
    sd = lora_state_dict(gpt, "b")
    assert sorted(sd) == ["blocks.0.mlp.fc.A", "blocks.0.mlp.fc.B", "blocks.1.mlp.fc.A", "blocks.1.mlp.fc.B"]
    assert sd["blocks.0.mlp.fc.A"].shape == (2, 32) and sd["blocks.0.mlp.fc.B"].shape == (128, 2)
    assert len(lora_state_dict(gpt, "a")) == 8 * 3  # A, B, magnitude on 8 layers


@pytest.mark.parametrize("dora", [False, True])
def test_save_load_round_trip_gives_the_same_logits(gpt, idx, randomize, tmp_path, dora):
    inject_lora(gpt, r=4, alpha=8, adapter="task", rslora=True, dora=dora)
    randomize(gpt, "task", seed=5)
    want = gpt(idx)
    path = save_adapter(tmp_path / "task.safetensors", gpt, "task")
    assert read_meta(path)["config"]["rslora"] is True
    other = fresh_gpt()
    assert load_adapter(path, other) == "task"
    torch.testing.assert_close(other(idx), want, atol=0, rtol=0)  # same weights, same ops: exact
    assert load_adapter(path, other, adapter="copy") == "copy"  # under another name, too
    set_active_adapters(other, ["copy"])
    torch.testing.assert_close(other(idx), want, atol=0, rtol=0)
    assert [p.requires_grad for p in lora_layers(other)["blocks.0.mlp.fc"].lora["copy"].parameters()]


def test_loading_into_a_model_of_another_shape_is_a_clear_error(gpt, tmp_path):
    inject_lora(gpt, r=4, alpha=8)
    path = save_adapter(tmp_path / "a.safetensors", gpt)
    wider = fresh_gpt(n_embd=48, n_head=2)
    with pytest.raises(CheckpointError, match=r"does not fit this model: blocks\.0\.attn\.qkv: file is "
                                              r"for a \(96 x 32\) layer, model has \(144 x 48\)"):
        load_adapter(path, wider)
    deeper = fresh_gpt(n_layer=1)
    with pytest.raises(CheckpointError, match="does not have: it was trained for another model"):
        load_adapter(path, deeper)


def test_loading_into_an_adapter_of_another_rank_is_a_clear_error(gpt, tmp_path):
    inject_lora(gpt, r=4, alpha=8)
    path = save_adapter(tmp_path / "a.safetensors", gpt)
    other = fresh_gpt()
    inject_lora(other, r=8, alpha=8)  # same name, rank 8
    with pytest.raises(CheckpointError, match="has rank 8, the file has rank 4"):
        load_adapter(path, other)


def test_a_model_file_is_not_an_adapter_file(gpt, tmp_path):
    from shared import save_model

    path = save_model(tmp_path / "model.safetensors", gpt, meta={"kind": "gpt"})
    with pytest.raises(CheckpointError, match="meta\\['kind'\\] is 'gpt', expected 'lora-adapter'"):
        load_adapter(path, gpt)
