"""The planner against real references: measured peak memory of real training steps, the
bytes autograd really saves, the real model's parameter count and FLOPs, a real FSDP2 shard,
and the command line."""

import json
import subprocess
import sys

import pytest
import torch

from week03_training import flops_per_token, token_cross_entropy
from week03_training.flops import _GPU_PEAKS
from week04_modern_arch_tools import Llama, LlamaConfig
from week11_scale.gpus import GPUS, gpu
from week11_scale.memory import block_saved, head_saved, measure_peak_memory, param_counts
from week11_scale.plan import PlanConfig, main, memory_plan, plan

SMALL = {
    "d4": LlamaConfig.from_depth(4, vocab_size=4096, block_size=256),
    "d6": LlamaConfig.from_depth(6, vocab_size=8192, block_size=256, head_dim=64),
    "gqa": LlamaConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=8, n_kv_head=2,
                       n_embd=256),
}
CLI = ["--preset", "d20", "--gpus", "8", "--gpu", "h100-80gb", "--strategy", "fsdp",
       "--activation-checkpointing"]


# ---------------------------------------------------------------- memory (the real check)


@pytest.mark.core
@pytest.mark.parametrize("name,batch,optimizer,ac,dtype", [
    ("d4", 8, "adamw", False, "fp32"),
    ("d4", 8, "adamw", True, "fp32"),
    ("d6", 8, "muon", False, "fp32"),
    ("gqa", 8, "muon", True, "bf16"),
])
def test_planned_peak_within_15pct_of_measured(name, batch, optimizer, ac, dtype):
    cfg = SMALL[name]
    measured = measure_peak_memory(cfg, batch, cfg.block_size, optimizer=optimizer,
                                   activation_checkpointing=ac, dtype=dtype)
    planned = memory_plan(cfg, PlanConfig(micro_batch=batch, optimizer=optimizer, dtype=dtype,
                                          activation_checkpointing=ac, kernels="cpu"))
    assert measured.peak > 50 * 2**20  # the model, not the interpreter, dominates
    assert abs(planned.peak - measured.peak) <= 0.15 * measured.peak, (planned, measured)
    # the persistent parts are exact: counted from the real tensors
    assert planned.params == measured.params
    assert planned.grads == measured.grads
    assert abs(planned.optimizer - measured.optimizer) <= 8 * 4 * 64  # + step counters


@pytest.mark.core
def test_measure_cuda_path():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the cuda.max_memory_allocated path is untested")
    cfg = SMALL["d4"]
    m = measure_peak_memory(cfg, 4, 128, device="cuda")
    assert m.method == "cuda.max_memory_allocated" and m.peak > m.params


def _saved_bytes(cfg: LlamaConfig, B: int, T: int, dtype: str) -> dict[str, int]:
    """Bytes of the distinct storages autograd saves, by part (blocks / rest), weights out."""
    torch.manual_seed(0)
    model = Llama(cfg)
    owned = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    where, seen = ["rest"], {}

    def pack(t):
        st = t.untyped_storage()
        seen.setdefault(st.data_ptr(), (st.nbytes(), where[0]))
        return t

    for b in model.blocks:
        b.register_forward_pre_hook(lambda mod, a: where.__setitem__(0, "blocks"))
    model.ln_f.register_forward_pre_hook(lambda mod, a: where.__setitem__(0, "rest"))
    x = torch.randint(0, cfg.vocab_size, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        logits = model(x)
        token_cross_entropy(logits, torch.randint(0, cfg.vocab_size, (B, T)))  # week03's fp32 loss
    out = {"blocks": 0, "rest": 0}
    for ptr, (nbytes, part) in seen.items():
        if ptr not in owned:
            out[part] += nbytes
    return out


@pytest.mark.stretch
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("cfg", [
    LlamaConfig.from_depth(2, vocab_size=512, block_size=64, head_dim=32),      # relu2, qk-norm
    LlamaConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64),
    LlamaConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                qk_norm=True, mlp="relu2", logit_softcap=10.0),
    LlamaConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_embd=64,
                tie_embeddings=True),
], ids=["nanochat", "gqa-swiglu", "gqa-relu2-qknorm", "tied"])
def test_activation_formula_equals_what_autograd_saves(cfg, dtype):
    B, T = 2, 48
    saved = _saved_bytes(cfg, B, T, dtype)
    n = param_counts(cfg)
    casts = dtype == "bf16"  # autocast's bf16 weight copies are saved by the linears
    assert saved["blocks"] == block_saved(cfg, dtype, "cpu") * B * T * cfg.n_layer + \
        casts * 2 * n["block_matmul"] * cfg.n_layer
    # + the loss's 4-byte total-weight scalar
    assert saved["rest"] == head_saved(cfg, dtype, "cpu") * B * T + casts * 2 * n["head"] + 4


# ---------------------------------------------------------------- counts


@pytest.mark.stretch
@pytest.mark.parametrize("name", list(SMALL))
def test_counts_match_the_real_model(name):
    cfg = SMALL[name]
    model = Llama(cfg)
    n = param_counts(cfg)
    assert n["total"] == sum(p.numel() for p in model.parameters())
    assert n["block"] == sum(p.numel() for p in model.blocks[0].parameters())
    T = cfg.block_size
    assert plan(cfg, PlanConfig(micro_batch=1, total_batch_tokens=T)).flops_per_token == \
        flops_per_token(model, T)


@pytest.mark.stretch
@pytest.mark.parametrize("name", ["d20", "1b"])
def test_counts_match_num_params_for_the_big_presets(name):
    cfg = LlamaConfig.presets()[name]
    assert param_counts(cfg)["total"] == cfg.num_params()
    if name == "d20":
        assert 550e6 < cfg.num_params() < 570e6


@pytest.mark.stretch
def test_gpu_table_matches_week03_peaks():
    for key, (bf16, fp32) in _GPU_PEAKS.items():
        ours = [g for g in GPUS.values()
                if g.name.split("-")[0].removeprefix("rtx") == key.lower()]
        for g in ours:
            assert (g.bf16_tflops * 1e12, g.fp32_tflops * 1e12) == (bf16, fp32)
    with pytest.raises(ValueError, match="valid: h100-80gb"):
        gpu("h100")


# ---------------------------------------------------------------- sharding (real FSDP2)

FSDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from week04_modern_arch_tools import Llama, LlamaConfig
dist.init_process_group("gloo")
cfg = LlamaConfig(**json.loads(sys.argv[1]))
model = Llama(cfg)
for block in model.blocks:
    fully_shard(block)
fully_shard(model)
local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
print("LOCAL", dist.get_rank(), local, flush=True)
dist.destroy_process_group()
"""


@pytest.mark.stretch
def test_fsdp_shards_match_a_real_fully_shard(torchrun_py, tmp_path):
    from dataclasses import asdict

    cfg = LlamaConfig.from_depth(2, vocab_size=1000, block_size=64, head_dim=32)
    script = tmp_path / "shard.py"
    script.write_text(FSDP_SCRIPT)
    out = torchrun_py(script, json.dumps(asdict(cfg)))
    local = [int(line.split()[2]) for line in out.stdout.splitlines() if line.startswith("LOCAL")]
    assert len(local) == 2
    planned = memory_plan(cfg, PlanConfig(gpus=2, strategy="fsdp"))
    buffers = 3 * cfg.block_size * cfg.head_dim * 4
    assert sum(local) == 4 * cfg.num_params()
    for b in local:  # dim-0 chunks: a rank's share is N / W up to the last rows' rounding
        assert abs(b - (planned.params - buffers)) <= 0.01 * b
    assert planned.grads == planned.params - buffers
    single = memory_plan(cfg, PlanConfig())
    assert planned.optimizer == -(-single.optimizer // 2)


# ---------------------------------------------------------------- command line


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "week11_scale.plan", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.core
def test_cli_prints_every_part():
    out = _cli(*CLI)
    assert out.returncode == 0, out.stderr
    for part in ("parameters", "gradients", "optimizer state", "activations, no checkpointing",
                 "activations, activation checkpointing      ", "total = peak", "fits: yes",
                 "tokens per optimizer step 524,288", "FLOPs per token", "Chinchilla",
                 "8.25", "$3.00 per GPU-hour", "loss estimate"):
        assert part in out.stdout, part
    ac_line = next(x for x in out.stdout.splitlines() if "activation checkpointing" in x
                   and "activations" in x)
    assert ac_line.endswith("<-")  # the chosen activations are marked


@pytest.mark.core
def test_cli_json_matches_plan(capsys):
    assert main([*CLI, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    expected = plan(LlamaConfig.presets()["d20"], PlanConfig(
        gpus=8, strategy="fsdp", activation_checkpointing=True))
    assert d["memory"]["peak"] == expected.memory.peak
    assert d["flops_per_token"] == expected.flops_per_token
    assert d["fits"] is True and d["grad_accum"] == 2


@pytest.mark.core
@pytest.mark.parametrize("args,message", [
    (["--gpu", "h100"], "unknown gpu 'h100'; valid: h100-80gb"),
    (["--strategy", "tp"], "strategy 'tp' unknown; valid: single, ddp, zero1, fsdp"),
    (["--gpus", "3", "--strategy", "ddp"], "is not a multiple of micro_batch * seq_len * gpus"),
    (["--preset", "d99"], "unknown preset 'd99'"),
    (["--gpus", "2"], "strategy single runs on 1 gpu"),
])
def test_cli_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.stretch
def test_d20_fits_on_8_h100_fsdp_ac_not_on_one_l4():
    d20 = LlamaConfig.presets()["d20"]
    assert plan(d20, PlanConfig(gpus=8, strategy="fsdp", activation_checkpointing=True)).fits
    assert not plan(d20, PlanConfig(gpus=1, gpu="l4-24gb", strategy="ddp")).fits
