"""``shared.load_model`` rebuilds week01's GPT and week04's Llama from a checkpoint alone,
including checkpoints written before models were recorded by import path."""

from dataclasses import asdict

import pytest
import torch

from shared import load_model, read_meta, save_checkpoint, save_model
from week01_transformer import GPT, GPTConfig
from week04_modern_arch_tools import Llama, LlamaConfig

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_gpt_and_llama_come_back_as_themselves(tmp_path):
    torch.manual_seed(0)
    models = [GPT(GPTConfig.preset("test")), Llama(LlamaConfig.preset("test", qk_norm=True,
                                                                        logit_softcap=15.0))]
    idx = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    for model in models:
        path = save_model(tmp_path / f"{type(model).__name__}.safetensors", model)
        spec = read_meta(path)["model"]
        assert spec["class"] == f"{type(model).__module__}:{type(model).__qualname__}"
        again = load_model(path)
        assert type(again) is type(model) and again.config == model.config
        with torch.no_grad():
            assert torch.equal(again(idx), model.eval()(idx))


def test_checkpoints_with_a_bare_class_name_still_load(tmp_path):
    """Before import paths, metas held ``{"class": "Llama", **config fields}`` (week05's
    baseline and week07's tiny base on users' disks)."""
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset("test"))
    path = save_checkpoint(tmp_path / "old.safetensors", {"model": model.state_dict()},
                           {"model": {"class": "Llama", **asdict(model.config), "n_params": 1}})
    again = load_model(path)
    assert type(again) is Llama and again.config == model.config
    gpt = GPT(GPTConfig.preset("test"))
    legacy = {k: v for k, v in asdict(gpt.config).items() if k != "tie_embeddings"}
    path = save_checkpoint(tmp_path / "gpt.safetensors", gpt.state_dict(),
                           {"model": {"class": "GPT", **legacy}})
    assert load_model(path).config == gpt.config  # a field added since takes its default
