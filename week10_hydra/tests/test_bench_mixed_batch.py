"""The mixed-adapter benchmark runs end to end: ``benchmarks/mixed_batch.py --smoke``.

It first asserts that the bank, week06's per-adapter loop and PEFT's ``adapter_names`` give the
same logits, then times them; this test checks the plumbing only (every k and phase in the
table, every throughput finite and positive, the ratio columns equal to ours / loop and
ours / PEFT, the memory table's bank growth equal to ``adapter_bytes``) and nothing about
which side is faster.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.stretch


def test_smoke_prints_every_phase_with_consistent_ratios(tmp_path, monkeypatch, capsys,
                                                         load_bench):
    pytest.importorskip("peft")
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    bench = load_bench("mixed_batch")
    assert bench.main(["--smoke", "--threads", "0"]) == 0  # 0: leave torch's threads
    out = capsys.readouterr().out
    assert "same logits" in out, out
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
             if line.startswith("| ") and line.split("|")[2].strip() in ("prefill", "decode")]
    seen = {(int(c[0]), c[1]) for c in cells}
    assert seen == {(k, p) for k in bench.SMOKE["distinct"] for p in ("prefill", "decode")}, out
    for c in cells:
        ours, loop, peft, w04, base, r_loop, r_peft = map(float, c[2:9])
        assert all(math.isfinite(v) and v > 0 for v in (ours, loop, peft, w04, base)), c
        assert r_loop == pytest.approx(ours / loop, rel=0.05, abs=0.01), c
        assert r_peft == pytest.approx(ours / peft, rel=0.05, abs=0.01), c
    mem = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
           for line in out.splitlines() if line.startswith("| ours:") or line.startswith("| PEFT")}
    per = float(mem["ours: bank.adapter_bytes"][0])
    assert float(mem["ours: bank.nbytes() growth (add, pools grow)"][0]) == pytest.approx(per)
    assert float(mem["PEFT: add_adapter + copy weights"][0]) == pytest.approx(per)  # same LoRA
    assert float(mem["ours: hot swap (bank.add over a loaded name)"][1]) > 0
    assert not (tmp_path / "runs" / "bench").exists()  # a smoke run saves no figures


def test_bad_arguments_are_refused(capsys, load_bench):
    bench = load_bench("mixed_batch")
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "repeats must be an int >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="distinct adapter counts"):
        bench.BenchConfig(distinct=(1, 32))


def test_a_batch_on_one_adapter_takes_the_plain_matmul_and_equals_week06(make_llama,
                                                                        random_adapters):
    """The benchmark's k=1 case: every row on the same stack skips the gather (one addmm on
    (B*T, in)); its logits, and a cached decode whose rows leave early (``plan.keep``), equal
    week06's LoRALinear with that stack active for the whole batch."""
    import copy

    import torch

    from week01_transformer import DecodeConfig, Decoding, decode
    from week06_lora import set_active_adapters
    from week10_hydra.bank import AdapterBank

    base = make_llama(97)
    ref = random_adapters(copy.deepcopy(base), ["a", "b"], ranks=[4, 8])
    bank = AdapterBank(base)
    for n in "ab":
        bank.add_from_model(n, ref)
    x = torch.randint(0, 97, (4, 10), generator=torch.Generator().manual_seed(0))
    stack = [("a", 0.5), ("b", -1.5)]
    with torch.no_grad():
        with bank.use([stack] * 4) as plan:
            ours = base(x)
        assert plan.uniform and next(iter(plan._gathered.values()))[0].dim() == 2  # no gather
        set_active_adapters(ref, ["a", "b"])
        for layer in (m for m in ref.modules() if hasattr(m, "lora")):
            layer.lora["a"].scaling *= 0.5
            layer.lora["b"].scaling *= -1.5
        assert torch.allclose(ours, ref(x), atol=1e-5)
    prompts = [row.tolist() for row in x[:, :6]]
    full = decode(ref, prompts, DecodeConfig(max_new_tokens=10, temperature=0))
    stop = full[1].ids[3]
    cfg = DecodeConfig(max_new_tokens=10, temperature=0, stop_tokens=(stop,))
    theirs = decode(ref, prompts, cfg)
    with bank.use([stack] * 4) as plan:
        rows = Decoding(base, prompts, cfg, on_keep=plan.keep).run()
    assert [r.ids for r in rows] == [r.ids for r in theirs]
    assert plan.batch_size < 4  # rows did leave the batch
