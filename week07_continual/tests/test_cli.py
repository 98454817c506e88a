"""The command line on a custom stream and a tiny checkpoint written by the test."""

import json

import pytest
import torch

from shared import save_model
from week02_bpe import BPETokenizer
from week04_modern_arch_tools import Llama, LlamaConfig
from week07_continual.run import main

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_cli_writes_table_json_and_heatmaps(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    tok = BPETokenizer.train("alpha beta gamma delta " * 30, 256 + 9 + 10)
    tok.save(tmp_path / "tokenizer.json")
    config = LlamaConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                         n_embd=16)
    torch.manual_seed(0)
    ckpt = save_model(tmp_path / "model.safetensors", Llama(config))  # records model_spec
    stream = tmp_path / "stream"
    stream.mkdir()
    for t, word in enumerate(("alpha", "beta")):
        rows = [{"prompt": f"{word} {i}", "answer": word, "split": "test" if i < 2 else "train"}
                for i in range(6)]
        (stream / f"{t}_{word}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    code = main(["--stream", str(stream), "--strategy", "naive,lora+replay", "--model", str(ckpt),
                 "--smoke", "--out", str(out), "--no-progress", "--separate"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| stream | strategy | acc |" in printed and "lora+replay" in printed
    res = json.loads((out / "results.json").read_text())
    assert [r["strategy"] for r in res["rows"]] == ["naive", "lora+replay"]
    # the time column is each strategy's wall time over naive's (the value itself is noise)
    for row in res["rows"]:
        assert row["time_x_naive"] == pytest.approx(row["wall_s"] / res["rows"][0]["wall_s"])
    assert (out / "heatmap_naive.png").exists() and (out / "heatmap_lora_replay.png").exists()
    assert (out / "naive" / "metrics.jsonl").exists()  # shared.MetricsLogger, for the dashboard


def test_bench_settings_are_the_benchmarks_and_the_notebooks():
    """The one place the benchmark and the notebook read their sizes from (README table)."""
    from week07_continual.run import BENCH_OVERRIDES, bench_settings

    cfg, n_train, n_test = bench_settings("skills-facts", max_len=128)
    assert (cfg.steps_per_task, cfg.batch_size, cfg.lr, cfg.lora_lr, cfg.router_examples,
            cfg.seed, cfg.max_len) == (200, 16, 1e-3, 3e-3, 24, 0, 128)
    assert bench_settings("skills", full=True)[0].steps_per_task == 300
    assert bench_settings("skills-facts", skills_steps=100)[0].steps_per_task == 100
    assert bench_settings("domains")[1:] == (48, 24) and bench_settings("domains")[0].steps_per_task == 40
    assert bench_settings("domains", full=True)[1:] == (200, 40)
    assert BENCH_OVERRIDES == {"fisher_examples": 32, "replay_capacity": 120, "replay_ratio": 0.3,
                               "ewc_lambda": 2000.0}
    with pytest.raises(ValueError, match="benchmark runs"):
        bench_settings("my-folder")
