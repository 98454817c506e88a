"""The speedrun's sizes: one depth knob, everything else derived from it or stated here.

``preset(name, **overrides)`` returns a ``SpeedrunPreset``:

- ``smoke``: the whole pipeline in seconds (the tests): a 1-layer model, a few steps each;
- ``cpu``: the default, the CPU-sized pipeline (measured: about 8.5 minutes on one thread of
  a shared 2-core CPU, base and SFT most of it; SFT gets the steps, on a tool-heavy mix);
- ``d20``: nanochat's first speedrun size (about 561M parameters, 20 tokens per parameter),
  for one 8 x H100 node: ``torchrun --nproc-per-node 8 -m week12_nanochat.speedrun --preset d20``;
- ``1b``: depth 26 (about 1.1B parameters), the same node, the same command.

The model is week04's ``LlamaConfig.from_depth(depth)`` (width = 64 x depth, heads of
``head_dim``, ReLU^2, QK-norm, soft-capped logits; untied but for the small presets: see
``tie_embeddings``). week08's parts are a preset's choice: ``attention="mla"`` and / or
``moe=True`` build week08's ``SotaModel`` instead; every preset here leaves both off (MLA
pays off in the KV cache of long contexts, MoE at sizes where experts outnumber the tokens each
sees: neither at 15 CPU minutes, and nanochat's d20 is dense).
The GPU presets derive their pretraining steps from ``tokens_per_param`` (Chinchilla's 20);
``plan_text`` asks week11's planner what memory and hours that costs.

Left out: a planner estimate for the CPU preset (week11's planner models GPUs; the speedrun's
own stage times in the report card are the CPU figure) and presets between these four.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

PRESET_NAMES = ("smoke", "cpu", "d20", "1b")
SFT_DATA = ("default", "smoltalk", "gsm8k")  # week09's offline mixture; SmolTalk, GSM8K by name

# ---------------------------------------------------------------- the preset


@dataclass
class SpeedrunPreset:
    """Every setting of one speedrun; ``depth`` is the size knob (see the module docstring)."""

    name: str = "cpu"
    about: str = ""
    # model (week04 LlamaConfig.from_depth; week08 when attention="mla" or moe)
    depth: int = 4
    aspect_ratio: int = 64             # width = aspect_ratio x depth (nanochat's 64)
    head_dim: int = 64
    block_size: int = 256
    # one matrix reads and writes tokens (week01's tie_weights). The small presets tie: copying a
    # token out of a tool's output is then the identity map the attention's output lands on, and
    # the cpu model learns to read its tools (measured, held-out arithmetic / facts / strings,
    # otherwise the same run: untied 0.93 / 0.63 / 0.37, tied 0.93-1.0 / 0.93-1.0 / 0.80-0.87;
    # the README's "How it learned to read its tools")
    tie_embeddings: bool = False
    attention: str = "gqa"             # gqa (week04) | mla (week08)
    moe: bool = False                  # week08 MoE MLPs
    # tokenizer (week02 BPE, with the chat and tool specials)
    vocab_size: int = 2048
    tokenizer_chars: int = 2_000_000   # characters of pretraining text the merges learn from
    # pretraining (week03 Trainer; week11 DistributedTrainer under torchrun)
    pretrain_data: str = "pydocs"      # pydocs | fineweb-edu | climbmix | a local path
    data_limit: int | None = None      # documents read from a hub corpus
    base_steps: int = 400
    tokens_per_param: float | None = None  # derives base_steps when set (GPU presets)
    batch_size: int = 16               # sequences per micro-batch (per GPU)
    grad_accum: int = 1
    base_lr: float = 4e-3
    optimizer: str = "adamw"
    warmup_steps: int = 20
    tool_rows: int = 4                 # rows per base batch that are week04 tool conversations
    tool_conversations: int = 2000     # per kind, train split
    # share of tool problems with week04's fresh entities (new worlds, pydocs words), which
    # cannot be memorised, so they teach the copy from the tool's output: with tied embeddings
    # the cpu model's held-out strings went 0.40 -> 0.87 at 0.5 (facts 0.73 -> 0.97); untied,
    # fresh problems did not help (facts / strings 0.23 / 0.37 at 0, 0.17 / 0.27 at 0.5)
    tool_fresh: float = 0.0
    # SFT (week09 run_sft)
    sft_data: str = "default"          # comma list of default | smoltalk | gsm8k (week09 hubdata)
    sft_steps: int = 700
    sft_batch: int = 16
    sft_lr: float = 2e-3
    pretrain_mix: float = 0.25         # week09's rehearsal: a share of rows are pydocs text
    mixture: dict = field(default_factory=lambda: {"tools_per_kind": 900, "multi_turn": 300})
    taught_facts: int = 240            # teachdata facts read from memories (it draws < 300)
    # RL (week09 GRPO on arithmetic with the calculator)
    rl: bool = True
    rl_steps: int = 20
    rl_group: int = 8
    rl_prompts_per_step: int = 8
    rl_lr: float = 5e-5
    rl_max_new_tokens: int = 64
    rl_train: int = 1000
    # eval (week09 stage_scores = week05's report card + the verified win rate)
    eval_limit: int = 100              # examples per multiple-choice task
    eval_gen: int = 30                 # held-out problems per tool task
    eval_max_tokens: int = 50_000      # held-out pydocs tokens for bits per byte
    eval_max_new: int = 128            # counts the tool output: a search result is ~25 tokens
    eval_pairs: int = 30               # preference prompts for the verified win rate
    # hardware
    device: str = "cpu"
    dtype: str = "fp32"
    gpus: int = 1                      # the intended world size (the planner's, torchrun's)
    gpu: str = "h100-80gb"
    seed: int = 0

    def __post_init__(self):
        problems = []
        for name in ("depth", "aspect_ratio", "head_dim", "block_size", "base_steps",
                     "batch_size", "grad_accum", "sft_steps", "sft_batch", "gpus"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive int, got {v!r}")
        if self.attention not in ("gqa", "mla"):
            problems.append(f"attention must be gqa or mla, got {self.attention!r}")
        if not 0 <= self.pretrain_mix <= 0.9:
            problems.append(f"pretrain_mix must be in [0, 0.9], got {self.pretrain_mix}")
        bad = sorted(set(self.sft_data.split(",")) - set(SFT_DATA))
        if bad or not self.sft_data:
            problems.append(f"sft_data {self.sft_data!r} unknown; valid: a comma list of "
                            f"{', '.join(SFT_DATA)}")
        if problems:
            raise ValueError(f"bad speedrun preset {self.name!r}: " + "; ".join(problems))

    # -- derived
    def model_config(self, vocab_size: int | None = None):
        """week04's ``LlamaConfig.from_depth`` (or week08's ``SotaConfig`` of the same shape)."""
        from week04_modern_arch_tools import LlamaConfig

        cfg = LlamaConfig.from_depth(self.depth, vocab_size=vocab_size or self.vocab_size,
                                     block_size=self.block_size, aspect_ratio=self.aspect_ratio,
                                     head_dim=self.head_dim,
                                     tie_embeddings=self.tie_embeddings)
        if self.attention == "gqa" and not self.moe:
            return cfg
        from week08_sota import SotaConfig

        mla = self.attention == "mla"  # MLA normalises its latents instead of q and k
        return SotaConfig(**{**asdict(cfg), "attn_type": self.attention, "moe": self.moe,
                             "qk_norm": cfg.qk_norm and not mla})

    def model_class(self) -> str:
        gqa = self.attention == "gqa" and not self.moe
        return "week04_modern_arch_tools:Llama" if gqa else "week08_sota:SotaModel"

    def n_params(self, vocab_size: int | None = None) -> int:
        """Parameters counted from the config (nothing is allocated)."""
        return self.model_config(vocab_size).num_params()

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size * self.grad_accum * self.gpus

    def steps_for(self, n_params: int) -> int:
        """Pretraining steps: ``base_steps``, or ``tokens_per_param x n_params`` tokens."""
        if self.tokens_per_param is None:
            return self.base_steps
        return max(1, round(self.tokens_per_param * n_params / self.tokens_per_step))

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, SpeedrunPreset] = {
    "smoke": SpeedrunPreset(
        name="smoke", about="seconds: a 1-layer model, a few steps per stage (the tests)",
        depth=1, aspect_ratio=32, head_dim=16, block_size=128, tie_embeddings=True,
        vocab_size=256 + 9 + 60,
        tokenizer_chars=60_000, base_steps=4, batch_size=4, warmup_steps=1, tool_rows=1,
        tool_conversations=20, sft_steps=4, sft_batch=4, pretrain_mix=0.25,
        mixture={"scale": 0.02}, taught_facts=6, rl_steps=2, rl_group=2, rl_prompts_per_step=2,
        rl_max_new_tokens=8, rl_train=8, eval_limit=4, eval_gen=2, eval_max_tokens=512,
        eval_max_new=8, eval_pairs=2),
    "cpu": SpeedrunPreset(
        name="cpu", aspect_ratio=32, head_dim=32, tie_embeddings=True, base_steps=250,
        tool_rows=6, tool_fresh=0.5,
        sft_steps=1000, sft_batch=8, sft_lr=3e-3, pretrain_mix=0.1,
        # week09's mixture, tool-heavy: identity / docstring Q&A / refusals cost steps the
        # three tool kinds need (measured against 400 base + 1000 SFT at batch 16 on the default
        # mixture: 23 min for arithmetic 0.70, facts 0.20, strings 0.33)
        mixture={"tools_per_kind": 2000, "identity": 40, "pydocs": 120, "multi_turn": 200,
                 "refusals": 40},
        about="depth 4 x 128 wide, tied embeddings (1.0M parameters), 256-token context, 250 "
              "base (6 of 16 rows tool conversations) + 1000 SFT (batch 8, tool-heavy mixture; "
              "half the tool problems with fresh entities) + 20 GRPO steps: about 8.5 min "
              "measured on one thread of the shared 2-core CPU (500 s beside a second run)"),
    "d20": SpeedrunPreset(
        name="d20", about="nanochat's d20 (~561M): 8 x H100 via torchrun, 20 tokens/param",
        depth=20, aspect_ratio=64, head_dim=128, block_size=2048, vocab_size=65536,
        tokenizer_chars=2_000_000_000,
        pretrain_data="fineweb-edu", data_limit=None, tokens_per_param=20.0, batch_size=8,
        grad_accum=4, base_lr=3e-4, optimizer="muon", warmup_steps=200, tool_rows=2,
        tool_conversations=20_000, sft_data="default,smoltalk,gsm8k", sft_steps=3000, sft_batch=8,
        sft_lr=3e-4, mixture={"scale": 10}, taught_facts=240, rl_steps=300,
        rl_prompts_per_step=32, rl_lr=1e-5, rl_max_new_tokens=128, rl_train=4000,
        eval_limit=1000, eval_gen=200, eval_max_tokens=1_000_000, eval_pairs=200,
        device="cuda", dtype="bf16", gpus=8),
}
PRESETS["1b"] = replace(PRESETS["d20"], name="1b", depth=26,
                        about="depth 26 (~1.1B): 8 x H100 via torchrun, 20 tokens/param")


def preset(name: str, **overrides) -> SpeedrunPreset:
    """The preset called ``name`` with ``overrides`` applied (a ValueError names the valid)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESET_NAMES)}")
    known = {f.name for f in fields(SpeedrunPreset)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown preset fields {bad}; valid: {', '.join(sorted(known))}")
    return replace(PRESETS[name], **overrides)


# ---------------------------------------------------------------- the planner


def plan_text(p: SpeedrunPreset) -> str:
    """One line of week11's planner for a GPU preset: memory per GPU, steps, hours, cost."""
    from week11_scale.plan import PlanConfig, plan

    cfg = p.model_config()
    pc = PlanConfig(gpus=p.gpus, gpu=p.gpu, strategy="ddp" if p.gpus > 1 else "single",
                    micro_batch=p.batch_size, seq_len=p.block_size,
                    total_batch_tokens=p.tokens_per_step,
                    optimizer="muon" if p.optimizer == "muon" else "adamw", dtype=p.dtype)
    r = plan(cfg, pc, name=p.name)
    n = r.n_params
    steps = p.steps_for(n)
    hours = r.runs["chinchilla"]["hours"] * (steps * p.tokens_per_step) / (20.0 * n)
    return (f"{p.name}: {n / 1e6:,.0f}M parameters, {p.gpus} x {p.gpu} (ddp), "
            f"{r.memory.peak / 2**30:.1f} GiB peak per GPU ({'fits' if r.fits else 'does NOT fit'}),"
            f" {steps:,} base steps x {p.tokens_per_step:,} tokens, about {hours:.1f} h of "
            f"pretraining at {pc.mfu:.0%} MFU (week11 planner)")
