"""The presets: sizes from the depth knob, the planner's verdict, the pretraining sources."""

import json

import pytest

from week12_nanochat.presets import PRESET_NAMES, plan_text, preset
from week12_nanochat.stages import pretrain_source, pretrain_texts, train_tokenizer


@pytest.mark.core
def test_d20_is_about_561m_and_1b_about_a_billion_counted_from_the_config():
    d20, b1 = preset("d20"), preset("1b")
    assert 555e6 < d20.n_params() < 567e6          # nanochat's d20: ~561M
    assert 0.95e9 < b1.n_params() < 1.15e9
    assert (d20.depth, d20.model_config().n_embd) == (20, 1280)   # width = 64 x depth


@pytest.mark.core
def test_the_config_count_is_the_built_models_count():
    from week12_nanochat.stages import build_model

    p = preset("smoke")
    model = build_model(p, p.vocab_size, seed=0)
    assert sum(t.numel() for t in model.parameters()) == p.n_params()


@pytest.mark.core
def test_the_small_presets_tie_their_embeddings_and_a_saved_stage_stays_tied(tmp_path):
    """cpu and smoke read and write tokens with one matrix (see presets.py: the copy from a
    tool's output); the GPU presets are nanochat's, untied. A stage saved and loaded again is
    still one matrix, so SFT cannot pull the two apart."""
    import torch

    from week02_bpe import BPETokenizer
    from week09_alignment.common import load_start, save_stage
    from week12_nanochat.stages import build_model

    assert preset("cpu").tie_embeddings and preset("smoke").tie_embeddings
    assert not preset("d20").tie_embeddings and not preset("1b").tie_embeddings
    cpu = build_model(preset("cpu"), 2048, seed=0)
    assert cpu.lm_head.weight is cpu.tok_emb.weight
    assert sum(t.numel() for t in cpu.parameters()) == preset("cpu").n_params(2048) < 1.1e6
    tok = BPETokenizer.train("tied heads copy tokens " * 40, 280)
    p = preset("smoke", vocab_size=tok.vocab_size)
    model = build_model(p, tok.vocab_size, seed=0)
    save_stage(tmp_path / "base", model, tok, {"stage": "base"})
    back, _, _ = load_start(tmp_path / "base", progress=False)
    assert back.lm_head.weight is back.tok_emb.weight
    assert torch.equal(back.tok_emb.weight, model.tok_emb.weight)


@pytest.mark.core
def test_the_gpu_presets_fit_an_h100_by_the_week11_planner_and_take_20_tokens_per_param():
    from week11_scale.plan import PlanConfig, plan

    for name in ("d20", "1b"):
        p = preset(name)
        r = plan(p.model_config(), PlanConfig(gpus=p.gpus, gpu=p.gpu, strategy="ddp",
                                              micro_batch=p.batch_size, seq_len=p.block_size,
                                              total_batch_tokens=p.tokens_per_step,
                                              optimizer=p.optimizer, dtype=p.dtype))
        assert r.fits, name
        tokens = p.steps_for(p.n_params()) * p.tokens_per_step
        assert tokens == pytest.approx(20 * p.n_params(), rel=0.01)
        assert "fits" in plan_text(p) and "does NOT" not in plan_text(p)


@pytest.mark.core
def test_unknown_preset_or_field_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: " + ", ".join(PRESET_NAMES)):
        preset("d30")
    with pytest.raises(ValueError, match="unknown preset fields \\['depthh'\\]"):
        preset("cpu", depthh=3)
    with pytest.raises(ValueError, match="pretrain_mix"):
        preset("cpu", pretrain_mix=1.5)
    with pytest.raises(ValueError, match="pydocs, fineweb-edu, climbmix"):
        pretrain_source("fineweb")


@pytest.mark.core
@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_fineweb_shaped_local_files_load_through_the_hub_code(tmp_path, suffix):
    """FineWeb-EDU's columns (text, id, url, score...) in a local file: the same datasets
    loader the hub name uses reads the text column, and the tokenizer stage shards it."""
    texts = [f"Document {i}: the river {'flows ' * (i + 3)}to the sea." for i in range(40)]
    rows = [{"text": t, "id": f"<urn:{i}>", "url": f"https://x/{i}", "score": 3.1, "int_score": 3}
            for i, t in enumerate(texts)]
    path = tmp_path / f"fineweb.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    src = pretrain_source(str(path))
    assert pretrain_texts(src, max_chars=10**9) == texts
    p = preset("smoke", pretrain_data=str(path), vocab_size=256 + 9 + 20)
    info = train_tokenizer(p, tmp_path / "tok", str(path), progress=False)
    from week02_bpe import BPETokenizer

    tok = BPETokenizer.load(tmp_path / "tok" / "tokenizer.json")
    # every document is <|bos|> + its tokens, in train or val
    assert info["train_tokens"] + info["val_tokens"] == sum(1 + len(tok.encode_ordinary(t))
                                                            for t in texts)


@pytest.mark.stretch
def test_week08_parts_are_a_preset_choice():
    from week04_modern_arch_tools import LlamaConfig
    from week08_sota import SotaConfig

    assert type(preset("cpu").model_config()) is LlamaConfig
    mla = preset("smoke", attention="mla", moe=True)
    cfg = mla.model_config()
    assert isinstance(cfg, SotaConfig) and cfg.attn_type == "mla" and cfg.moe
    assert mla.model_class() == "week08_sota:SotaModel"
    from week12_nanochat.stages import build_model

    model = build_model(mla, mla.vocab_size, seed=0)
    assert sum(t.numel() for t in model.parameters()) == cfg.num_params()
