"""SFT: our loss mask and loss equal TRL's; packed rows never see each other.

TRL runs itself here: its ``SFTTrainer`` tokenizes the same conversations
(through ``hf_tokenizer``'s tokenizer and chat template), builds its labels
with ``assistant_only_loss`` or ``completion_only_loss``, and its
``compute_loss`` scores a Hugging Face copy of our model.
"""

import warnings

import pytest
import torch
from datasets import Dataset

from shared import IGNORE_INDEX
from week04_modern_arch_tools import (
    Llama,
    LlamaConfig,
    fit_tokenizer,
    make_tool_dataset,
    render_conversation,
)
from week09_alignment.hf_tokenizer import to_hf_messages, to_hf_tokenizer
from week09_alignment.sft import (
    PackedRows,
    encode,
    make_loader,
    pack_documents,
    padded_collate,
    sft_loss,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

trl = pytest.importorskip("trl", reason="TRL (the reference) is in week09's dev extra")


def _conversations():
    tools = [c for k in ("arithmetic", "string", "facts") for c in make_tool_dataset(k, 3, seed=1)]
    multi = [{"role": "system", "content": "You are nanochat. Be brief."},
             {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "Hello! Ask me anything."},
             tools[0][0], tools[0][1],
             {"role": "user", "content": "Thanks."},
             {"role": "assistant", "content": "You are welcome."}]
    return tools + [multi]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    convs = _conversations()
    tok = fit_tokenizer(convs, 400)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_kv_head=2,
                              n_embd=32, block_size=512))
    return convs, tok, model, to_hf_tokenizer(tok), tmp_path_factory.mktemp("trl")


def _trainer(hf_model, hf_tok, rows, out, **cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trl.SFTTrainer(model=hf_model, processing_class=hf_tok,
                              train_dataset=Dataset.from_list(rows),
                              args=trl.SFTConfig(output_dir=str(out), report_to="none",
                                                 use_cpu=True, max_length=512, **cfg))


def _shifted(labels: list[int]) -> list[int]:
    """TRL's labels (token t or -100, shifted inside the model) as our targets y[t] = token t+1."""
    return [IGNORE_INDEX if t == -100 else t for t in labels[1:]]


def test_mask_equals_trl_assistant_only_loss(setup):
    """Tool calls trained, tool outputs and user turns masked, multi-turn with a system
    message: TRL's labels from its own tokenization equal ours, conversation by conversation."""
    convs, tok, model, hf_tok, out = setup
    tr = _trainer(model.to_hf(), hf_tok, [{"messages": to_hf_messages(c)} for c in convs], out,
                  assistant_only_loss=True)
    for conv, row in zip(convs, tr.train_dataset):
        ids, mask = render_conversation(conv, tok)
        assert row["input_ids"] == ids
        ours = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        assert _shifted(row["labels"]) == ours
    # and the tool outputs really are among the masked tokens
    ids, mask = render_conversation(convs[0], tok)
    out_start = ids.index(tok.special_tokens["<|output_start|>"])
    out_end = ids.index(tok.special_tokens["<|output_end|>"])
    assert not any(mask[out_start:out_end + 1]) and any(mask[out_end:])


def test_mask_equals_trl_completion_only_loss(setup):
    """Prompt/completion pairs (one user turn, a plain reply): TRL's completion mask is ours."""
    convs, tok, model, hf_tok, out = setup
    pairs = [[{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]
             for w in ("one", "two words", "a longer reply with punctuation!")]
    tr = _trainer(model.to_hf(), hf_tok, [{"prompt": p[:1], "completion": p[1:]} for p in pairs],
                  out, completion_only_loss=True)
    for pair, row in zip(pairs, tr.train_dataset):
        ids, mask = render_conversation(pair, tok)
        assert row["input_ids"] == ids
        assert [int(t != -100) for t in row["labels"]] == mask  # TRL folds its mask in


def test_loss_equals_trl_compute_loss(setup):
    """TRL's collator + compute_loss on the HF copy = our padded batch + sft_loss (1e-5)."""
    convs, tok, model, hf_tok, out = setup
    hf = model.to_hf()
    tr = _trainer(hf, hf_tok, [{"messages": to_hf_messages(c)} for c in convs], out,
                  assistant_only_loss=True)
    batch = tr.data_collator([tr.train_dataset[i] for i in range(len(convs))])
    theirs = tr.compute_loss(hf.train(), batch)
    rows, _ = encode(convs, tok, 511)
    ours, metrics = sft_loss(model.train(), padded_collate(rows))
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-5)
    assert metrics["trained_tokens"] == int((batch["labels"][:, 1:] != -100).sum())


def test_pack_documents_worked_example():
    """block_size 4, lengths 3, 2, 4 -> best fit: [c] (4 tokens, room 1) and a+b. Row a+b =
    [1, 2, 3, 4, 5]: x [1, 2, 3, 4], labels [0 0 0 1]; every token is trained, yet 3 -> 4
    (a's last token to b's first) is not a target; row c gets a padding column (-1)."""
    a, b, c = [1, 2, 3], [4, 5], [6, 7, 8, 9]
    x, y, seg = pack_documents([a, b, c], 4, [[1] * 3, [1] * 2, [1] * 4])
    assert x.tolist() == [[6, 7, 8, 0], [1, 2, 3, 4]]
    assert y.tolist() == [[7, 8, 9, -1], [2, 3, -1, 5]]
    assert seg.tolist() == [[0, 0, 0, -1], [0, 0, 0, 1]]
    x, y, seg = pack_documents([[1, 2, 3, 4], [5, 6, 7]], 6)
    assert seg.tolist() == [[0, 0, 0, 0, 1, 1]] and y[0, 3] == IGNORE_INDEX


def test_packed_loss_equals_padded_loss_so_nothing_leaks(setup):
    """The same conversations packed (best fit, segments mask) or padded one per row give
    the same targets and the same loss: no conversation sees another, none of the
    crossing targets is trained."""
    convs, tok, model, _, _ = setup
    rows, cut = encode(convs, tok, 255)
    assert cut == 0
    packed = PackedRows(rows, 255)
    assert len(packed) < len(rows) and packed.fill() > 0.5
    b = packed.collate(list(range(len(packed))))
    padded = padded_collate(rows)
    assert int((b["y"] >= 0).sum()) == int((padded["y"] >= 0).sum())
    model.eval()
    torch.testing.assert_close(sft_loss(model, b)[0], sft_loss(model, padded)[0],
                               atol=1e-5, rtol=1e-5)
    # without the mask the packed rows do leak, and the loss moves
    leaky = {"x": b["x"], "y": b["y"]}
    assert abs(float(sft_loss(model, leaky)[0]) - float(sft_loss(model, padded)[0])) > 1e-4


def test_gradient_only_from_assistant_tokens(setup):
    """The loss's gradient with respect to the logits is zero at every position whose next
    token is a user, tool-output or padding token."""
    convs, tok, model, _, _ = setup
    rows, _ = encode(convs[:4], tok, 255)
    b = padded_collate(rows)
    logits = model(b["x"]).detach().requires_grad_(True)
    from week03_training import token_cross_entropy

    token_cross_entropy(logits, b["y"]).backward()
    silent = logits.grad.abs().sum(-1) == 0  # (B, T)
    assert torch.equal(silent, b["y"] < 0)


def test_long_conversations_are_cut_and_loader_resumes(setup):
    convs, tok, _, _, _ = setup
    rows, cut = encode(convs, tok, 20)
    assert cut > 0 and all(len(r[0]) <= 21 for r in rows)
    loader = make_loader(rows, 20, 2, packing=True, seed=3)
    state = loader.state_dict()
    first = loader.next_batch()
    loader.load_state_dict(state)
    again = loader.next_batch()
    assert all(torch.equal(first[k], again[k]) for k in first)
