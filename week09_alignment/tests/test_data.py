"""The SFT mixture: every kind renders through week04's render_conversation with the mask
on the assistant only, splits follow week04's split_of, tool outputs are the real tools'
outputs, refusals call no tool, and SmolTalk / GSM8K load from local files in their schemas.

References: week04's ``render_conversation``, ``split_of``, ``Calculator``, ``Search`` and
``PythonREPL``; ``datasets`` reading files written in the hub datasets' schemas; three real
GSM8K train rows (Natalia, Weng, Betty), copied with their annotations.
"""

import json
import re

import pytest

from shared import Corpus, Document
from week04_modern_arch_tools import (
    Calculator,
    PythonREPL,
    fit_tokenizer,
    make_tool_dataset,
    render_conversation,
)
from week04_modern_arch_tools.chat import special_ids
from week04_modern_arch_tools.tooldata import make_world, split_of
from week09_alignment.data import (
    MixtureConfig,
    default_mixture,
    gsm8k_conversation,
    identity_conversations,
    load_gsm8k_sft,
    load_smoltalk,
    mixture_by_kind,
    multi_turn,
    pydocs_qa,
    refusals,
    tool_conversations,
)

pytestmark = pytest.mark.core


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """No caches or runs outside tmp_path (conftest.py keeps the hub offline)."""
    monkeypatch.setenv("NANOCHAT_CACHE", str(tmp_path / "nanochat"))
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))


DOCS = [Document("doc:json.dumps", "Serialize ``obj`` to a JSON formatted ``str``.\n\nIf ..."),
        Document("doc:json.loads", "Deserialize ``s`` (a ``str``, ``bytes`` or ``bytearray``\n"
                 "instance containing a JSON document) to a Python object.\n\nMore."),
        Document("doc:os.path.join", "Join two or more pathname components, inserting '/' as "
                 "needed."),
        Document("doc:textwrap.dedent", "Remove any common leading whitespace from every line "
                 "in `text`.\n\nThis can be used..."),
        Document("doc:json._private", "Private helpers are never asked about, however long."),
        Document("topic:if", "The if statement is used for conditional execution of code."),
        Document("doc:shutil.rmtree", "Recursively delete a directory tree.\n\nIf ..."),
        Document("doc:random.Random.shuffle", "Shuffle list x in place, and return None.")]
CORPUS = Corpus("tiny-docs", tuple(DOCS))
CFG = MixtureConfig(identity=20, pydocs=10, tools_per_kind=10, multi_turn=20, refusals=20)

GSM8K_ROWS = [  # openai/gsm8k main, train rows 0, 1 and 3
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
     "many clips in May. How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
     "<<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
     "babysitting. How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she "
     "earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "Betty is saving money for a new wallet which costs $100. Betty has only half "
     "of the money she needs. Her parents decided to give her $15 for that purpose, and her "
     "grandparents twice as much as her parents. How much more money does Betty need to buy "
     "the wallet?",
     "answer": "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's "
     "grandparents gave her 15 * 2 = $<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - "
     "15 = $<<100-50-30-15=5>>5 more.\n#### 5"}]


@pytest.fixture(scope="module")
def tok():
    return fit_tokenizer(make_tool_dataset("arithmetic", 100, seed=0), vocab_size=300)


def parts_of(conv, types):
    return [p for m in conv if m["role"] == "assistant" and isinstance(m["content"], list)
            for p in m["content"] if p["type"] in types]


def test_every_kind_renders_with_the_mask_on_the_assistant_only(tok):
    """Rebuild each conversation's ids from its pieces: the mask is 1 exactly on assistant
    text, calls (with their delimiters) and <|assistant_end|>; 0 on users and tool outputs."""
    sp = special_ids(tok)
    kinds = mixture_by_kind(CFG, corpus=CORPUS)
    assert all(len(v) for v in kinds.values())
    for convs in kinds.values():
        for conv in convs:
            ids, mask = render_conversation(conv, tok)
            trained = [i for i, m in zip(ids, mask) if m]
            untrained = [i for i, m in zip(ids, mask) if not m]
            want_trained, want_untrained = [], [sp["<|bos|>"]]
            for m in conv:
                if m["role"] == "user":
                    want_untrained += [sp["<|user_start|>"], *tok.encode(m["content"]),
                                       sp["<|user_end|>"]]
                    continue
                want_untrained.append(sp["<|assistant_start|>"])
                for p in m["content"]:
                    if p["type"] == "output":
                        want_untrained += [sp["<|output_start|>"], *tok.encode(p["text"]),
                                           sp["<|output_end|>"]]
                    elif p["type"] == "python":
                        want_trained += [sp["<|python_start|>"], *tok.encode(p["text"]),
                                         sp["<|python_end|>"]]
                    else:
                        want_trained += tok.encode(p["text"])
                want_trained.append(sp["<|assistant_end|>"])
            assert trained == want_trained and untrained == want_untrained


def test_splits_are_disjoint_and_follow_split_of():
    world = {c["name"] for c in make_world(0)}
    for split in ("train", "test"):
        for conv in multi_turn(40, seed=0, split=split):
            for p in parts_of(conv, ("python",)):
                tool, arg = p["text"].split(": ", 1)
                if tool == "calculator":
                    assert split_of(f"arithmetic:{arg}") == split
                else:
                    attr, name = arg.split(" of ")
                    assert name in world and split_of(f"facts:{name}/{attr}") == split
    for fn, key in ((identity_conversations, lambda c: f"identity:{c[0]['content']}"),
                    (lambda n, split: pydocs_qa(n, split=split, corpus=CORPUS),
                     lambda c: f"pydocs:{re.search('`(.+?)`', c[0]['content']).group(1)}")):
        seen = {s: {key(c) for c in fn(30, split=s)} for s in ("train", "test")}
        assert seen["train"] and seen["test"] and not seen["train"] & seen["test"]
        assert all(split_of(k) == s for s in seen for k in seen[s])
    unsafe = {s: {c[0]["content"] for c in refusals(200, split=s) if not parts_of(c, ("python",))}
              for s in ("train", "test")}
    assert not unsafe["train"] & unsafe["test"]


def test_pydocs_qa_asks_public_names_for_their_first_sentence():
    answers = {c[0]["content"]: c[1]["content"][0]["text"]
               for c in pydocs_qa(40, seed=0, split="train", corpus=CORPUS)
               + pydocs_qa(40, seed=0, split="test", corpus=CORPUS)}
    asked = {re.search("`(.+?)`", q).group(1): a for q, a in answers.items()}
    assert asked["json.dumps"] == "Serialize `obj` to a JSON formatted `str`."
    assert asked["json.loads"] == ("Deserialize `s` (a `str`, `bytes` or `bytearray` instance "
                                   "containing a JSON document) to a Python object.")
    assert "json._private" not in asked and "if" not in asked


def test_pydocs_qa_on_the_real_embedded_corpus():
    convs = pydocs_qa(200, seed=0)
    assert len({c[0]["content"] for c in convs}) == 200
    assert all(c[1]["content"][0]["text"][0].isupper() for c in convs)


def test_multi_turn_outputs_are_the_real_tools():
    from week04_modern_arch_tools import fact_search
    calc, search = Calculator(), fact_search(0)
    convs = multi_turn(30, seed=0)
    assert {len(c) // 2 for c in convs} == {2, 3}
    for conv in convs:
        parts = parts_of(conv, ("python", "output"))
        for call, out in zip(parts[::2], parts[1::2]):
            tool, arg = call["text"].split(": ", 1)
            assert out["text"] == (calc.run(arg) if tool == "calculator" else search.run(arg))
            if tool == "search":  # the top hit is the country asked about
                assert arg.split(" of ")[1].lower() in out["text"].split(":")[0]
        calls = [p["text"] for p in parts_of(conv, ("python",))]
        if calls[0].startswith("calculator"):  # each follow-up starts from the last result
            outs = [p["text"] for p in parts_of(conv, ("output",))]
            assert all(c.split(": ")[1].startswith(o + " ") for c, o in zip(calls[1:], outs))


def test_refusals_call_no_tool_and_lookalikes_run_for_real():
    convs = refusals(80, seed=0)
    refused = [c for c in convs if not parts_of(c, ("python",))]
    safe = [c for c in convs if parts_of(c, ("python",))]
    assert len(safe) == 20 and len(refused) == 60
    assert all(c[1]["content"][0]["text"].startswith("I can't") for c in refused)
    assert any("/etc/shadow" in c[0]["content"] or ".ssh" in c[0]["content"] for c in refused)
    with PythonREPL(timeout=10) as repl:  # the look-alikes' outputs are what Python prints
        for c in {json.dumps(c): c for c in safe}.values():
            call, out = parts_of(c, ("python", "output"))
            assert repl.run(call["text"].removeprefix("python: ")) == out["text"]


def test_identity_answers_are_consistent():
    convs = identity_conversations(200, seed=0)
    by_q = {}
    for c in convs:
        by_q.setdefault(c[0]["content"], set()).add(c[1]["content"][0]["text"])
    assert all(len(a) == 1 for a in by_q.values())
    assert any("nanochat" in a for s in by_q.values() for a in s)


def test_mixture_is_deterministic_and_shuffled():
    a = default_mixture(CFG, seed=0, corpus=CORPUS)
    assert json.dumps(a) == json.dumps(default_mixture(CFG, seed=0, corpus=CORPUS))
    assert json.dumps(a) != json.dumps(default_mixture(CFG, seed=1, corpus=CORPUS))
    by_kind = mixture_by_kind(CFG, corpus=CORPUS)
    assert len(a) == sum(map(len, by_kind.values())) == 20 + 10 + 30 + 20 + 20
    assert a[:30] != by_kind["identity"] + by_kind["pydocs"]
    with pytest.raises(ValueError, match="non-negative"):
        mixture_by_kind(MixtureConfig(identity=-1), corpus=CORPUS)
    with pytest.raises(ValueError, match="valid: train, test"):
        refusals(3, split="validation")


def test_fresh_tools_reach_the_mixture():
    """``fresh_tools``: the mixture's tool problems are week04's fresh ones (no fixed word)."""
    from dataclasses import replace

    from week04_modern_arch_tools.tooldata import _WORDS

    fresh = mixture_by_kind(replace(CFG, fresh_tools=1.0), corpus=CORPUS)["tools"]
    assert fresh == tool_conversations(10, fresh=1.0)
    calls = [p["text"] for c in fresh for p in parts_of(c, {"python"})]
    assert len(calls) == 30 and not any(f"'{w}'" in c for c in calls for w in _WORDS)
    fixed = mixture_by_kind(CFG, corpus=CORPUS)["tools"]
    assert not {json.dumps(c) for c in fresh} & {json.dumps(c) for c in fixed}
    half = tool_conversations(10, fresh=0.5)  # 5 fixed + 5 fresh per kind
    assert sum(json.dumps(c) in {json.dumps(f) for f in fixed} for c in half) == 15
    with pytest.raises(ValueError, match="share"):
        tool_conversations(10, fresh=2.0)


def test_gsm8k_annotations_become_calculator_calls():
    stats = {}
    conv = gsm8k_conversation(GSM8K_ROWS[0], 0, stats)
    assert conv[0] == {"role": "user", "content": GSM8K_ROWS[0]["question"]}
    assert conv[1]["content"] == [
        {"type": "text", "text": "Natalia sold 48/2 = "},
        {"type": "python", "text": "calculator: 48/2"}, {"type": "output", "text": "24"},
        {"type": "text", "text": "24 clips in May.\nNatalia sold 48+24 = "},
        {"type": "python", "text": "calculator: 48+24"}, {"type": "output", "text": "72"},
        {"type": "text", "text": "72 clips altogether in April and May.\nThe answer is 72."}]
    calc = Calculator()
    for row in GSM8K_ROWS[1:]:
        conv = gsm8k_conversation(row, 0, stats)
        calls = [p["text"].removeprefix("calculator: ") for p in parts_of(conv, ("python",))]
        assert calls == re.findall(r"<<([^=]+)=", row["answer"])
        assert [p["text"] for p in parts_of(conv, ("output",))] == [calc.run(c) for c in calls]
        assert conv[1]["content"][-1]["text"].endswith(f"The answer is {row['answer'][-2:].strip()}.")
    assert stats == {"calls": 7}  # every call evaluated and agreed with its annotation


def test_gsm8k_local_file_and_calculator_fallback(tmp_path):
    odd = {"question": "Q?", "answer": "It is <<half of 10=5>>5 and <<10/3=3.33>>3.33.\n#### 5"}
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS + [odd]))
    stats = {}
    with pytest.warns(UserWarning, match="1 used the annotated result"):
        convs = load_gsm8k_sft("train", data_files=str(f), cache_dir=str(tmp_path / "c"),
                               stats=stats)
    assert len(convs) == 4 and stats == {"calls": 9, "fallback": 1}
    assert [p["text"] for p in parts_of(convs[-1], ("output",))] == ["5", Calculator().run("10/3")]
    assert len(load_gsm8k_sft("train", data_files=str(f), limit=2,
                              cache_dir=str(tmp_path / "c"))) == 2


def test_smoltalk_local_file_skips_broken_rows(tmp_path, tok):
    good = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}], "source": "smol-magpie"},
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                          {"role": "user", "content": "Times 3?"},
                          {"role": "assistant", "content": "12"}], "source": "smol-rewrite"}]
    broken = {"messages": [{"role": "user", "content": "Hi"},
                           {"role": "system", "content": "late system"},
                           {"role": "assistant", "content": "Hello"}], "source": "x"}
    f = tmp_path / "train.parquet"
    import datasets
    datasets.Dataset.from_list(good[:1] + [broken] + good[1:]).to_parquet(str(f))
    with pytest.warns(UserWarning, match="skipped 1 broken rows"):
        convs = load_smoltalk("train", data_files=str(f), cache_dir=str(tmp_path / "c"))
    assert convs == [g["messages"] for g in good]
    for c in convs:
        render_conversation(c, tok)
    with pytest.raises(ValueError, match="SmolTalk row 1: roles"):
        load_smoltalk("train", data_files=str(f), on_bad="error", cache_dir=str(tmp_path / "c"))
