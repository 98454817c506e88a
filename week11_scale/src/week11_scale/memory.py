"""What training keeps in memory: counted from the config, and measured on real steps.

``param_counts``, ``block_saved`` and ``head_saved`` count parameters and the bytes autograd
saves per token from a ``LlamaConfig`` alone (``week11_scale.plan``'s docstring writes the
accounting out; a test holds the counts equal to ``saved_tensors_hooks`` on the real model).

``measure_peak_memory(model_cfg, batch_size, seq_len, ...)`` starts a FRESH Python process
(``python -m week11_scale.memory``) that builds week04's ``Llama``, week03's optimizer
(``build_optimizer`` from a ``TrainConfig``) and runs ``steps`` training steps as week03's
Trainer does (zero_grad to None, ``next_token_loss`` under the chosen autocast, backward,
``clip_grad_norm``, step), optionally with one activation checkpoint per block
(``torch.distributed._composable.checkpoint``, the API week11's trainer uses). On a CPU it
reports the peak RSS (``VmHWM``, see ``peak_rss``) minus the RSS right before the model is built (after
one warm-up step of a one-layer copy, so libtorch's code pages and lazy initialisations,
about 170 MB on first use, are in the baseline, not in the peak); the
child runs with ``MALLOC_MMAP_THRESHOLD_=65536`` (large blocks are mmapped, so freed
tensors leave the RSS) and ``OMP_NUM_THREADS=1``. On CUDA the same function reports
``torch.cuda.max_memory_allocated``. Parameter, gradient and optimizer bytes are counted
from the real tensors.

Left out: multi-process strategies (one process, strategy "single") and allocator caching
effects on CUDA (``max_memory_allocated`` counts live tensors, not the reserved pool).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass, replace

from week04_modern_arch_tools import LlamaConfig

__all__ = ["MeasuredMemory", "measure_peak_memory", "param_counts", "block_saved", "head_saved",
           "peak_rss"]


# ---------------------------------------------------------------- counts


def param_counts(m: LlamaConfig) -> dict[str, int]:
    """Parameter counts from the config alone: total, per block, matmul, the Muon split."""
    C, V, L = m.n_embd, m.vocab_size, m.n_layer
    total = m.num_params()
    emb = V * C * (1 if m.tie_embeddings else 2)
    block = (total - emb - C) // L
    block_norms = 2 * C + (2 * m.head_dim if m.qk_norm else 0)
    block_matmul = block - block_norms
    return {"total": total, "block": block, "block_matmul": block_matmul,
            "root": emb + C, "head": V * C, "matmul": total - (0 if m.tie_embeddings else V * C),
            "muon": L * block_matmul, "adamw": total - L * block_matmul,
            "largest_adamw": V * C, "cast": L * block_matmul + V * C}


# ---------------------------------------------------------------- activations


def block_saved(m: LlamaConfig, dtype: str = "bf16", kernels: str = "cuda") -> int:
    """Bytes one block's autograd graph saves per token (no weight copies)."""
    a = 2 if dtype == "bf16" else 4
    cpu = kernels == "cpu"
    C, hd, H, Hkv, Ii = m.n_embd, m.head_dim, m.n_head, m.n_kv_head, m.intermediate_size
    Cq, Ckv, rep = H * hd, Hkv * hd, H // Hkv
    norm = 4 * C + 4 + (4 * C if cpu else 0)        # fp32 residual in: x, rstd (+ x_hat)
    b = 2 * norm + a * C + a * C                    # ln_1, ln_2; qkv and fc inputs
    if rep == 1 or (m.qk_norm and a == 4):          # qkv output kept alive as saved views
        b += a * (Cq + 2 * Ckv)
    if m.qk_norm:                                   # q_norm, k_norm
        for heads, width in ((H, Cq), (Hkv, Ckv)):
            b += 4 * heads + ((4 * width if cpu else 0) if a == 4 else 6 * width)
    b += a * Cq + a * (Cq if rep > 1 else Ckv)      # SDPA's q and k (rotated copies)
    b += a * Cq if rep > 1 else 0                   # v repeated (else a view of qkv)
    b += a * Cq + 4 * H                             # SDPA output, logsumexp
    b += a * Cq if (cpu and a == 4 and m.qk_norm) else 0  # (B, H, T, hd) -> (B, T, C) copy
    b += (4 if m.mlp == "swiglu" else 2) * a * Ii   # MLP: act outputs, down's input
    return b


def head_saved(m: LlamaConfig, dtype: str = "bf16", kernels: str = "cuda") -> int:
    """Bytes per token the embedding, final norm, head and fp32 loss save."""
    a = 2 if dtype == "bf16" else 4
    C, V = m.n_embd, m.vocab_size
    norm = 4 * C + 4 + (4 * C if kernels == "cpu" else 0)
    softcap = a * V if m.logit_softcap is not None else 0
    return norm + a * C + softcap + 4 * V + 8 + 8   # + fp32 log-softmax; targets, ids
    # (the loss also saves one 4-byte scalar per step, its total weight)


# ---------------------------------------------------------------- result


@dataclass
class MeasuredMemory:
    peak: int              # bytes above the baseline at the highest point of the steps
    params: int            # bytes of the parameters (and buffers)
    grads: int             # bytes of the gradients after the last backward
    optimizer: int         # bytes of the optimizer state tensors
    baseline: int          # RSS (or allocated bytes) before the model was built
    device: str
    method: str            # "VmHWM" (peak RSS) or "cuda.max_memory_allocated"


# ---------------------------------------------------------------- parent


def measure_peak_memory(model_cfg: LlamaConfig, batch_size: int, seq_len: int,
                        optimizer: str = "adamw", activation_checkpointing: bool = False,
                        steps: int = 2, dtype: str = "fp32", device: str = "cpu",
                        timeout: float = 300) -> MeasuredMemory:
    """Peak memory of ``steps`` real training steps, measured in a fresh process."""
    if seq_len > model_cfg.block_size:
        raise ValueError(f"seq_len {seq_len} exceeds block_size {model_cfg.block_size}")
    if batch_size < 1 or steps < 1:
        raise ValueError(f"batch_size and steps must be >= 1, got {batch_size}, {steps}")
    spec = {"config": asdict(model_cfg), "batch_size": batch_size, "seq_len": seq_len,
            "optimizer": optimizer, "ac": activation_checkpointing, "steps": steps,
            "dtype": dtype, "device": device}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "week11_scale.memory", json.dumps(spec)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({out.returncode}):\n"
                           f"{out.stderr[-3000:]}")
    return MeasuredMemory(**json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- child


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's peak resident memory in bytes since it started its program: Linux's
    ``VmHWM`` (the high-water mark of its own address space). Not ``ru_maxrss``: across
    fork + exec that keeps the parent's RSS at the fork as a floor, so a child of a big
    process (a pytest session) would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024     # ru_maxrss: bytes on macOS, KiB here
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _train(cfg: LlamaConfig, spec: dict, batches: list, device):
    """week03's step, ``len(batches)`` times: the model, its optimizer and its parameters."""
    import torch
    from torch.distributed._composable import checkpoint

    from week03_training import TrainConfig, build_optimizer, clip_grad_norm, next_token_loss
    from week04_modern_arch_tools import Llama

    model = Llama(cfg).to(device)
    if spec["ac"]:
        for block in model.blocks:
            checkpoint(block)
    B, T = batches[0][0].shape
    tcfg = TrainConfig(optimizer=spec["optimizer"], batch_size=B, block_size=T,
                       dtype=spec["dtype"], device=str(device))
    opt = build_optimizer(model, tcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=spec["dtype"] == "bf16")
    for batch in batches:
        model.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = next_token_loss(model, batch)
        loss.backward()
        clip_grad_norm(params, tcfg.grad_clip)
        opt.step()
    return model, opt, params


def _child(spec: dict) -> dict:
    import gc

    import torch

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    B, T = spec["batch_size"], spec["seq_len"]
    cfg = LlamaConfig(**spec["config"])
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, cfg.vocab_size, (B, T), generator=gen).to(device),
                torch.randint(0, cfg.vocab_size, (B, T), generator=gen).to(device))
               for _ in range(spec["steps"])]
    tiny = replace(cfg, n_layer=1, vocab_size=64, block_size=min(T, 64))
    _train(tiny, spec, [(x[:1, :tiny.block_size] % 64, y[:1, :tiny.block_size] % 64)
                        for x, y in batches[:1]], device)   # page in the kernels, lazy inits
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = _rss()
    model, opt, params = _train(cfg, spec, batches, device)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = peak_rss() - baseline
    state = sum(t.nbytes for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    return {"peak": int(peak), "baseline": int(baseline), "device": str(device),
            "params": sum(t.nbytes for t in (*model.parameters(), *model.buffers())),
            "grads": sum(p.grad.nbytes for p in params if p.grad is not None),
            "optimizer": int(state),
            "method": "cuda.max_memory_allocated" if cuda else "VmHWM"}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m week11_scale.memory '<json spec>' (measure_peak_memory's "
              "child process)", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child(json.loads(sys.argv[1]))))
