"""Our adapters and PEFT's are interchangeable: same files, same logits (tiny HF Llama, random weights).

The base model is a ``transformers.LlamaForCausalLM`` built from a config. We
run ``inject_lora`` on its own ``nn.Linear`` modules, save in PEFT's format and
load with ``peft.PeftModel.from_pretrained`` (and the reverse). Tolerance: the
two sides run the same float32 ops in the same order, so 1e-5 on logits of
scale ~1 only absorbs summation-order noise.
"""

import copy

import pytest
import torch

from week06_lora import (
    inject_lora,
    load_peft_adapter,
    merge_adapter,
    mixed_batch,
    read_peft_config,
    save_peft_adapter,
    set_active_adapters,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

peft = pytest.importorskip("peft")
ATOL = 1e-5
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def ids():
    return torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(2))


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits


def randomize_peft(model, adapter, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if f".{adapter}." in name or name.endswith(f".{adapter}.weight"):
                if "lora_B" in name or "lora_A" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                elif "magnitude" in name:
                    p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("rslora,dora", [(False, False), (True, False), (False, True)])
def test_ours_saved_in_peft_format_loads_in_peft_with_the_same_logits(llama, ids, randomize,
                                                                      tmp_path, rslora, dora):
    base = copy.deepcopy(llama)
    before = logits(llama, ids)
    inject_lora(llama, targets=LLAMA_TARGETS, r=4, alpha=8, rslora=rslora, dora=dora)
    randomize(llama, "default", seed=3)
    ours = logits(llama, ids)
    folder = save_peft_adapter(tmp_path / "adapter", llama)
    assert read_peft_config(folder)["use_rslora"] is rslora
    pm = peft.PeftModel.from_pretrained(base, str(folder)).eval()
    torch.testing.assert_close(logits(pm, ids), ours, atol=ATOL, rtol=0)
    assert not torch.allclose(ours, before, atol=1e-3)  # the adapter does change the logits
    pm.merge_adapter()  # PEFT merged == ours merged == ours unmerged
    merge_adapter(llama, "default")
    torch.testing.assert_close(logits(pm, ids), ours, atol=ATOL, rtol=0)
    torch.testing.assert_close(logits(llama, ids), ours, atol=ATOL, rtol=0)


@pytest.mark.parametrize("rslora,dora", [(False, False), (True, True)])
def test_peft_adapter_loads_into_ours_with_the_same_logits(llama, ids, tmp_path, rslora, dora):
    ours_model = copy.deepcopy(llama)
    cfg = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                          use_rslora=rslora, use_dora=dora)
    pm = peft.get_peft_model(llama, cfg).eval()
    randomize_peft(pm, "default", seed=4)
    want = logits(pm, ids)
    pm.save_pretrained(str(tmp_path / "peft"))
    load_peft_adapter(tmp_path / "peft", ours_model, adapter="from_peft")
    torch.testing.assert_close(logits(ours_model, ids), want, atol=ATOL, rtol=0)
    merge_adapter(ours_model, "from_peft")
    torch.testing.assert_close(logits(ours_model, ids), want, atol=ATOL, rtol=0)


def test_several_adapters_stacked_and_mixed_batches_match_peft(llama, ids, randomize, tmp_path):
    base = copy.deepcopy(llama)
    inject_lora(llama, targets=LLAMA_TARGETS, r=4, alpha=8, adapter="a")
    inject_lora(llama, targets=["q_proj", "v_proj"], r=2, alpha=4, adapter="b")
    randomize(llama, "a", seed=5)
    randomize(llama, "b", seed=6)
    save_peft_adapter(tmp_path / "a", llama, "a")
    save_peft_adapter(tmp_path / "b", llama, "b")
    pm = peft.PeftModel.from_pretrained(base, str(tmp_path / "a"), adapter_name="a").eval()
    pm.load_adapter(str(tmp_path / "b"), adapter_name="b")
    for active in (["a"], ["b"], ["a", "b"]):
        set_active_adapters(llama, active)
        pm.base_model.set_adapter(active)  # PEFT's LoraModel sums a list of active adapters
        torch.testing.assert_close(logits(pm, ids), logits(llama, ids), atol=ATOL, rtol=0)
    names = ["a", "__base__", "b"]
    with mixed_batch(llama, names):
        ours = logits(llama, ids)
    pm.base_model.set_adapter("a")
    torch.testing.assert_close(logits(pm, ids, adapter_names=names), ours, atol=ATOL, rtol=0)


def test_peft_folder_errors_are_clear(llama, tmp_path):
    from shared import CheckpointError

    with pytest.raises(CheckpointError, match="adapter_config.json is missing"):
        load_peft_adapter(tmp_path, llama)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"])
    pm = peft.get_peft_model(copy.deepcopy(llama), cfg)
    pm.save_pretrained(str(tmp_path / "p"))
    transformers = pytest.importorskip("transformers")
    small = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32))
    with pytest.raises(CheckpointError, match=r"q_proj.A: file \(4, 32\) vs expected \(4, 16\)"):
        load_peft_adapter(tmp_path / "p", small)


def test_week04_llama_export_round_trips_through_peft(tmp_path, randomize):
    """The issue's target: the Hugging Face export of week04's Llama (runs once week04 exists)."""
    week04 = pytest.importorskip("week04_modern_arch_tools")
    torch.manual_seed(0)
    cfg_cls = getattr(week04, "LlamaConfig", None) or week04.Config
    cfg = cfg_cls.preset("test") if hasattr(cfg_cls, "preset") else cfg_cls()
    hf = week04.Llama(cfg).to_hf().eval()
    base = copy.deepcopy(hf)
    inject_lora(hf, r=4, alpha=8)
    randomize(hf, "default", seed=7)
    ids = torch.randint(0, hf.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    save_peft_adapter(tmp_path / "w4", hf)
    pm = peft.PeftModel.from_pretrained(base, str(tmp_path / "w4")).eval()
    torch.testing.assert_close(logits(pm, ids), logits(hf, ids), atol=ATOL, rtol=0)
