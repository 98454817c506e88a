"""Plan a training run before renting the GPUs: memory per GPU, FLOPs, wall time, cost.

    python -m week11_scale.plan --preset d20 --gpus 8 --gpu h100-80gb --strategy fsdp \\
        --activation-checkpointing

Everything comes from the ``LlamaConfig`` (no model is allocated). The memory accounting,
per GPU, for week04's ``Llama`` trained by week03's loop (fp32 master weights; ``--dtype
bf16`` is autocast: matmuls in bf16, weights stay fp32):

* single / ddp: every rank holds everything: weights 4 B/param, grads 4 B/param, AdamW's m
  and v 8 B/param (Muon: one 4 B momentum buffer per hidden matrix, AdamW's 8 B for the
  embeddings, head and norms: week03's ``muon_param_groups`` split). DDP adds its gradient
  buckets, another 4 B/param (``gradient_as_bucket_view=False``, the default).
  Autocast keeps a bf16 copy of every matmul weight (2 B/param) that the linears save.
* zero1: as ddp, but the optimizer state is divided by the world size W.
* fsdp (``fully_shard`` per block + the root, ``MixedPrecisionPolicy(param_dtype=bf16,
  reduce_dtype=fp32)``): weights, grads and optimizer state all / W, plus the unsharded
  bf16 copies in flight: two blocks' params (one computing, one prefetched) and, in backward,
  their bf16 grads; the root's embedding and head stay unsharded from forward to backward
  (2 B/param) and grow bf16 grads in backward. No autocast copies: the saved weights are
  FSDP's unsharded params, freed when a block reshards.
* activations: what autograd saves, per token, counted tensor by tensor (``block_saved`` and
  ``head_saved``; a test holds them equal to ``saved_tensors_hooks`` on the real model).
  With C = n_embd, Cq = n_head*head_dim, Ckv = n_kv_head*head_dim, I = intermediate_size,
  a = 2 (bf16 autocast) or 4 bytes, per block: each RMSNorm over the fp32 residual saves its
  input 4C and rstd 4 (CPU: also its normalised x, 4C; CUDA's fused kernel does not); the
  qkv, proj, fc and down matmuls save their input (a*C, a*Cq, a*C, a*I); the qkv output a*(Cq +
  2Ckv) stays alive as the view SDPA's v (and fp32 QK-norm) saves; QK-norm saves rstd 4H and
  the normalised q (fp32: CPU 4Cq; bf16: an fp32 copy 4Cq + the bf16 result 2Cq), same for k;
  RoPE saves nothing per token (only the cos/sin tables); SDPA (flash / memory-efficient:
  this CPU runs the flash kernel, measured; no T^2 scores are saved) keeps q, k, v, its
  output and the logsumexp 4H; grouped kv heads are repeated first, so k and v count Cq each;
  on CPU in fp32 with QK-norm the output comes back laid out (B, H, T, hd) and is copied to
  (B, T, C) for the projection (+4Cq; measured: other layouts are a view);
  ReLU^2 saves 2*a*I, SwiGLU 4*a*I. The head: the final norm as above, the head input a*C,
  the soft-capped logits' tanh a*V, the fp32 log-softmax 4V (week03's fp32 cross-entropy) and
  the int64 targets and ids, 16. Activation checkpointing (one checkpoint per block, non-
  reentrant): each block keeps only its fp32 input 4C; backward recomputes one block at a
  time.
* the peak is the max over phases: the forward's end (everything saved, the logits being
  formed), the start of backward (plus two fp32 (B*T, V) gradient buffers of the loss), each
  block's backward (activations freed as grads appear, plus that block's recompute under
  checkpointing and its gradient temporaries) and the optimizer step (grads + state + the
  step's temporaries: AdamW makes two tensors the size of the largest parameter, Muon's
  Newton-Schulz four of the largest matrix). The CUDA context and allocator slack are not
  counted: ``headroom`` (10%) of the GPU is kept free for them.

Time and cost: training FLOPs per token = 6 N + 12 * n_layer * n_embd * T (N: every
parameter but the embedding table, the count of ``week03_training.flops_per_token``), for
20 tokens per parameter (Chinchilla; nanochat's first d20 speedrun used 20 too) and for 8.25
(nanochat's current speedrun, ``--target-param-data-ratio=8.25``), at a stated MFU. The loss
estimate comes from the CPU scaling-law fit (``week11_scale.scaling.load_fit``): fitted on
tiny CPU models on pydocs with our tokenizer, it extrapolates far outside its range, a
shape and not a promise.

Left out: pipeline and tensor parallelism, CPU offload, fragmentation, NCCL buffers, the
KV cache of inference, and FSDP's own bf16 residual stream (its per-token figure uses
autocast's, a little high).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

from week04_modern_arch_tools import LlamaConfig
from week11_scale.gpus import GPUS, gpu
from week11_scale.memory import block_saved, head_saved, param_counts

__all__ = ["PlanConfig", "MemoryPlan", "RunPlan", "memory_plan", "plan", "render", "main",
           "block_saved", "head_saved", "param_counts", "STRATEGIES", "RATIOS"]

STRATEGIES = ("single", "ddp", "zero1", "fsdp")
OPTIMIZERS = ("adamw", "muon")
DTYPES = ("bf16", "fp32")
KERNELS = ("cuda", "cpu")
RATIOS = {"chinchilla": 20.0, "nanochat": 8.25}  # tokens per parameter
GIB = 2**30

# ---------------------------------------------------------------- configs


@dataclass
class PlanConfig:
    """The planner's flags (``python -m week11_scale.plan --help``)."""

    gpus: int = 1                      # world size W (all nodes together)
    nodes: int = 1                     # only for the text: gpus / nodes per node
    gpu: str = "h100-80gb"
    strategy: str = "single"           # single | ddp | zero1 | fsdp
    activation_checkpointing: bool = False
    micro_batch: int = 16              # sequences per GPU per micro-step
    seq_len: int | None = None         # None: the model's block_size
    total_batch_tokens: int = 2**19    # tokens per optimizer step (nanochat's 524288)
    optimizer: str = "adamw"           # adamw | muon
    dtype: str = "bf16"                # bf16 (autocast) | fp32
    mfu: float = 0.40
    price: float | None = None         # USD per GPU-hour; None: the GPU's default
    headroom: float = 0.10             # share of the GPU kept for CUDA context / allocator
    kernels: str = "cuda"              # whose autograd kernels activations follow: cuda | cpu

    def __post_init__(self):
        problems = []
        for name in ("gpus", "nodes", "micro_batch", "total_batch_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive int, got {v!r}")
        if self.seq_len is not None and (not isinstance(self.seq_len, int) or self.seq_len < 1):
            problems.append(f"seq_len must be a positive int or None, got {self.seq_len!r}")
        for name, valid in (("strategy", STRATEGIES), ("optimizer", OPTIMIZERS),
                            ("dtype", DTYPES), ("kernels", KERNELS)):
            if getattr(self, name) not in valid:
                problems.append(f"{name} {getattr(self, name)!r} unknown; valid: "
                                f"{', '.join(valid)}")
        if self.gpu not in GPUS:
            problems.append(f"unknown gpu {self.gpu!r}; valid: {', '.join(GPUS)}")
        if not 0 < self.mfu <= 1:
            problems.append(f"mfu must be in (0, 1], got {self.mfu}")
        if self.price is not None and self.price < 0:
            problems.append(f"price must be >= 0, got {self.price}")
        if not 0 <= self.headroom < 1:
            problems.append(f"headroom must be in [0, 1), got {self.headroom}")
        if not problems and self.strategy == "single" and self.gpus != 1:
            problems.append(f"strategy single runs on 1 gpu, got --gpus {self.gpus}; "
                            "use ddp, zero1 or fsdp")
        if not problems and self.gpus % self.nodes:
            problems.append(f"--gpus {self.gpus} does not split over --nodes {self.nodes}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class MemoryPlan:
    """Bytes per GPU of each part, and the peak (the max over the phases)."""

    params: int                  # fp32 master weights (+ RoPE tables), / W under fsdp
    grads: int                   # fp32 gradients, / W under fsdp
    optimizer: int               # optimizer state, / W under zero1 and fsdp
    activations: int             # saved by autograd at the forward's end, the chosen AC mode
    activations_no_ac: int
    activations_ac: int
    copies: int                  # bf16 weight copies: autocast's, or fsdp's unsharded blocks
    buckets: int                 # DDP's gradient buckets (ddp, zero1)
    phases: dict[str, int] = field(default_factory=dict)
    peak: int = 0
    peak_phase: str = ""


@dataclass
class RunPlan:
    """A ``MemoryPlan`` plus the run's tokens, FLOPs, time, cost and loss estimate."""

    model: str
    config: PlanConfig
    memory: MemoryPlan
    n_params: int
    n_matmul_params: int         # N of 6N: every parameter but the embedding table
    gpu_memory: int
    usable: int                  # gpu_memory * (1 - headroom)
    fits: bool
    seq_len: int
    grad_accum: int
    tokens_per_step: int
    flops_per_token: float
    price_per_gpu_hour: float
    runs: dict[str, dict] = field(default_factory=dict)   # per ratio: tokens, flops, hours...
    loss: float | None = None
    loss_source: str = "no fit"


# ---------------------------------------------------------------- memory


def _grad_temp(m: LlamaConfig, dtype: str) -> int:
    """Per token: a block's backward temporaries (residual grads in and out, two of the
    widest intermediate's)."""
    widest = max(m.intermediate_size * (2 if m.mlp == "swiglu" else 1),
                 (m.n_head + 2 * m.n_kv_head) * m.head_dim)
    return 8 * m.n_embd + 2 * (2 if dtype == "bf16" else 4) * widest


def memory_plan(model_cfg: LlamaConfig, cfg: PlanConfig) -> MemoryPlan:
    """Bytes per GPU of weights, grads, optimizer state, activations, copies; the peak."""
    m, c = model_cfg, cfg
    n = param_counts(m)
    W = c.gpus if c.strategy == "fsdp" else 1
    T = c.seq_len or m.block_size
    tok = c.micro_batch * T                                   # tokens per micro-step per GPU
    bf16 = c.dtype == "bf16"
    g = 2 if bf16 else 4                                      # fsdp's unsharded dtype

    buffers = 3 * m.block_size * m.head_dim * 4               # RoPE cos, sin, sin_rot
    params = -(-4 * n["total"] // W) + buffers
    grads = -(-4 * n["total"] // W)
    state = 8 * n["total"] if c.optimizer == "adamw" else 4 * n["muon"] + 8 * n["adamw"]
    optimizer = -(-state // (c.gpus if c.strategy in ("zero1", "fsdp") else 1))
    buckets = 4 * n["total"] if c.strategy in ("ddp", "zero1") else 0
    L = m.n_layer
    blk, hd_ = block_saved(m, c.dtype, c.kernels) * tok, head_saved(m, c.dtype, c.kernels) * tok
    ckpt = 4 * m.n_embd * tok                                 # a checkpointed block's input
    act_full, act_ckpt = L * blk + hd_, L * ckpt + hd_
    ac = c.activation_checkpointing
    per_block = ckpt if ac else blk

    # bf16 copies: autocast's weight casts (saved by the linears), or fsdp's unsharded params
    if c.strategy == "fsdp":
        fwd_copies = 2 * g * n["block"] + g * n["root"]       # two blocks in flight + root
        bwd_copies = fwd_copies + 2 * g * n["block"] + g * n["root"]   # + their bf16 grads
        head_copies = fwd_copies + g * n["head"]              # the head's grad first
        blk_copy = 0
    elif bf16:
        fwd_copies = 2 * n["cast"]                            # autocast's cache, all weights
        head_copies = 2 * n["cast"] if not ac else 2 * n["head"]
        bwd_copies = head_copies
        blk_copy = 2 * n["block_matmul"] if ac else 0         # the recomputed block's casts
    else:
        fwd_copies = head_copies = bwd_copies = blk_copy = 0

    base = params + optimizer + buckets
    logits_live = tok * m.vocab_size * (4 + (4 if bf16 else 0))
    phases = {"forward": base + act_ckpt * ac + act_full * (not ac) + fwd_copies + logits_live,
              "backward (loss)": base + (act_ckpt if ac else act_full) + head_copies
              + 2 * 4 * tok * m.vocab_size}
    # each block's backward, last to first: its activations (recomputed under AC) + temps
    g_head, g_block = 4 * (n["head"] + m.n_embd) // W, 4 * n["block"] // W
    worst, worst_i = 0, L - 1
    for i in reversed(range(L)):
        mem = (base + g_head + (L - 1 - i) * g_block + i * per_block + (ckpt if ac else 0)
               + blk + blk_copy + bwd_copies + _grad_temp(m, c.dtype) * tok)
        if mem > worst:
            worst, worst_i = mem, i
    phases[f"backward (block {worst_i})"] = worst
    # the optimizer step: AdamW's two temporaries of the largest parameter (the embedding),
    # Muon's Newton-Schulz: four of its largest matrix plus three r x r Gram matrices
    temp = 2 * 4 * n["largest_adamw"]
    if c.optimizer == "muon":
        shapes = [(m.intermediate_size * (2 if m.mlp == "swiglu" else 1), m.n_embd),
                  ((m.n_head + 2 * m.n_kv_head) * m.head_dim, m.n_embd)]
        temp = max(temp, max(4 * 4 * a * b + 3 * 4 * min(a, b) ** 2 for a, b in shapes))
    phases["optimizer step"] = params + grads + optimizer + buckets + -(-temp // W)
    peak_phase = max(phases, key=phases.get)
    copies = {"forward": fwd_copies, "backward (loss)": head_copies}.get(
        peak_phase, bwd_copies + blk_copy if peak_phase.startswith("backward") else 0)
    return MemoryPlan(params=params, grads=grads, optimizer=optimizer,
                      activations=act_ckpt if ac else act_full, activations_no_ac=act_full,
                      activations_ac=act_ckpt, copies=copies, buckets=buckets, phases=phases,
                      peak=phases[peak_phase], peak_phase=peak_phase)


# ---------------------------------------------------------------- the run


def _loss_estimate(model_cfg: LlamaConfig) -> tuple[float | None, str]:
    try:
        from week11_scale.lossfit import count_for_fit, load_fit

        fit = load_fit()
        if fit is None:
            return None, "no fit"
        # the N the fit was made in: non-embedding parameters (Kaplan), or the total
        n_params = (count_for_fit(model_cfg) if fit.n_kind == "non_embedding"
                    else model_cfg.num_params())
        source = fit.source
        if isinstance(source, dict):  # the sweep's record: say what it was fitted on
            source = ", ".join(f"{k} {source[k]}" for k in ("sizes", "data", "vocab_size",
                                                           "block_size", "date") if k in source)
        return float(fit.predict(float(n_params))), f"CPU fit: {source}"
    except Exception:  # another helper's module: a missing or broken fit must not block
        return None, "no fit"


def plan(model_cfg: LlamaConfig, cfg: PlanConfig, name: str = "") -> RunPlan:
    """The whole plan: memory per GPU, tokens per step, FLOPs, hours and cost per ratio."""
    T = cfg.seq_len or model_cfg.block_size
    if T > model_cfg.block_size:
        raise ValueError(f"seq_len {T} exceeds the model's block_size {model_cfg.block_size}")
    per_micro = cfg.micro_batch * T * cfg.gpus
    if cfg.total_batch_tokens % per_micro:
        raise ValueError(f"total_batch_tokens {cfg.total_batch_tokens} is not a multiple of "
                         f"micro_batch * seq_len * gpus = {cfg.micro_batch} * {T} * {cfg.gpus} "
                         f"= {per_micro}: grad accumulation must be a whole number")
    mem = memory_plan(model_cfg, cfg)
    n = param_counts(model_cfg)
    card = gpu(cfg.gpu)
    usable = int(card.memory_bytes * (1 - cfg.headroom))
    fpt = 6.0 * n["matmul"] + 12.0 * model_cfg.n_layer * model_cfg.n_embd * T
    price = card.price_per_hour if cfg.price is None else cfg.price
    rate = cfg.gpus * card.peak_flops(cfg.dtype) * cfg.mfu            # achieved FLOP/s
    runs = {}
    for key, ratio in RATIOS.items():
        tokens = ratio * n["total"]
        hours = tokens * fpt / rate / 3600
        runs[key] = {"tokens_per_param": ratio, "tokens": tokens, "steps": tokens / per_micro
                     / (cfg.total_batch_tokens // per_micro), "flops": tokens * fpt,
                     "hours": hours, "cost": hours * cfg.gpus * price}
    loss, source = _loss_estimate(model_cfg)
    return RunPlan(model=name or f"depth {model_cfg.n_layer}", config=cfg, memory=mem,
                   n_params=n["total"], n_matmul_params=n["matmul"],
                   gpu_memory=card.memory_bytes, usable=usable, fits=mem.peak <= usable,
                   seq_len=T, grad_accum=cfg.total_batch_tokens // per_micro,
                   tokens_per_step=cfg.total_batch_tokens, flops_per_token=fpt,
                   price_per_gpu_hour=price, runs=runs, loss=loss, loss_source=source)


# ---------------------------------------------------------------- text


def render(p: RunPlan) -> str:
    """The plan as the text the command line prints."""
    c, m = p.config, p.memory
    per_node = c.gpus // c.nodes
    gb = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    row = lambda label, b, mark="": f"  {label:<40}{gb(b)} {mark}".rstrip()  # noqa: E731
    shard = " / W" if c.strategy == "fsdp" else ""
    ac_on, ac_off = ("<-", "") if c.activation_checkpointing else ("", "<-")
    state = "AdamW m, v" if c.optimizer == "adamw" else "Muon momentum + AdamW m, v"
    lines = [
        f"{p.model}: {p.n_params / 1e6:,.1f}M parameters ({p.n_matmul_params / 1e6:,.1f}M in "
        f"matmuls), seq {p.seq_len}, {c.dtype}, {c.optimizer}",
        f"{c.gpus} x {c.gpu} ({c.nodes} node{'s' * (c.nodes > 1)} x {per_node}), strategy "
        f"{c.strategy}, micro-batch {c.micro_batch}, activation checkpointing "
        f"{'on' if c.activation_checkpointing else 'off'}",
        "", "memory per GPU",
        row(f"parameters (fp32{shard})", m.params),
        row(f"gradients (fp32{shard})", m.grads),
        row(f"optimizer state ({state})", m.optimizer),
        row("activations, no checkpointing", m.activations_no_ac, ac_off),
        row("activations, activation checkpointing", m.activations_ac, ac_on),
        row("bf16 weight copies at the peak", m.copies),
        row("DDP gradient buckets", m.buckets),
    ]
    lines += [row(f"phase: {k}", v) for k, v in m.phases.items()]
    lines += [
        row(f"total = peak ({m.peak_phase})", m.peak),
        f"  fits: {'yes' if p.fits else 'NO'} ({gb(p.usable).strip()} usable of "
        f"{gb(p.gpu_memory).strip()}, {c.headroom:.0%} kept for CUDA context / allocator)",
        "", f"tokens per optimizer step {p.tokens_per_step:,} (grad accumulation "
        f"{p.grad_accum})",
        f"training FLOPs per token {p.flops_per_token:.3e} (6N + 12 * layers * width * seq)",
        f"at MFU {c.mfu:.0%} and ${p.price_per_gpu_hour:.2f} per GPU-hour:",
    ]
    names = {"chinchilla": "Chinchilla, 20 tokens/param (also nanochat's first d20 speedrun)",
             "nanochat": "nanochat's current speedrun ratio, 8.25 tokens/param"}
    for key, r in p.runs.items():
        lines.append(f"  {names[key]}: {r['tokens'] / 1e9:.2f}B tokens, {r['steps']:,.0f} "
                     f"steps, {r['flops']:.2e} FLOPs, {r['hours']:.2f} h, ${r['cost']:,.0f}")
    loss = "no fit" if p.loss is None else f"{p.loss:.3f} nats/token ({p.loss_source})"
    lines += [f"loss estimate at the end: {loss}", "  (the fit is of tiny CPU models on pydocs "
              "with our tokenizer: far outside its range, a shape, not a promise)"]
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m week11_scale.plan", description=__doc__
                                 .split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    d = PlanConfig()
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--preset", help=f"one of {', '.join(LlamaConfig.presets())} (default d20)")
    size.add_argument("--depth", type=int, help="LlamaConfig.from_depth(N)")
    ap.add_argument("--gpus", type=int, default=d.gpus, help="world size, all nodes")
    ap.add_argument("--nodes", type=int, default=d.nodes)
    ap.add_argument("--gpu", default=d.gpu, help=", ".join(GPUS))
    ap.add_argument("--strategy", default=d.strategy, help=", ".join(STRATEGIES))
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--micro-batch", type=int, default=d.micro_batch)
    ap.add_argument("--seq-len", type=int, default=None, help="default: the block_size")
    ap.add_argument("--total-batch-tokens", type=int, default=d.total_batch_tokens)
    ap.add_argument("--optimizer", default=d.optimizer, help=", ".join(OPTIMIZERS))
    ap.add_argument("--dtype", default=d.dtype, help=", ".join(DTYPES))
    ap.add_argument("--mfu", type=float, default=d.mfu)
    ap.add_argument("--price", type=float, default=None, help="USD per GPU-hour "
                    "(default per GPU: " + ", ".join(f"{k} ${g.price_per_hour:.2f}"
                                                     for k, g in GPUS.items()) + ")")
    ap.add_argument("--headroom", type=float, default=d.headroom)
    ap.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()

    def one_line(message: str):  # bad flags: one line, exit 2
        print(f"plan: {message}; see --help", file=sys.stderr)
        raise SystemExit(2)

    ap.error = one_line
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one line (or --help)
        return int(e.code or 0)
    try:
        presets = LlamaConfig.presets()
        if args.depth is not None:
            model, name = LlamaConfig.from_depth(args.depth), f"depth {args.depth}"
        else:
            name = args.preset or "d20"
            if name not in presets:
                raise ValueError(f"unknown preset {name!r}; valid: {', '.join(presets)}")
            model = presets[name]
        cfg = PlanConfig(gpus=args.gpus, nodes=args.nodes, gpu=args.gpu,
                         strategy=args.strategy,
                         activation_checkpointing=args.activation_checkpointing,
                         micro_batch=args.micro_batch, seq_len=args.seq_len,
                         total_batch_tokens=args.total_batch_tokens, optimizer=args.optimizer,
                         dtype=args.dtype, mfu=args.mfu, price=args.price,
                         headroom=args.headroom)
        result = plan(model, cfg, name)
    except ValueError as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result)) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
