"""Our week02 tokenizer and week04 chat format as Hugging Face objects, for TRL.

TRL's trainers take a ``transformers`` tokenizer (a *processing class*) and
chat data in Hugging Face's message format. To run TRL itself on exactly our
data, this module builds both from ours:

- ``to_hf_tokenizer(tok)``: a ``PreTrainedTokenizerFast`` that gives the same
  ids as ``tok.encode`` on ordinary text (the same byte-level BPE: our merges
  in order, our split pattern, tiktoken's rule that a piece already in the
  vocabulary is taken whole), our special tokens at their ids, and a Jinja
  chat template (``CHAT_TEMPLATE``) that renders week04's conversation
  format, with ``{% generation %}`` around what the assistant writes, so
  ``apply_chat_template(..., return_assistant_tokens_mask=True)`` (TRL's
  ``assistant_only_loss``) marks the tokens week04's mask marks;
- ``to_hf_messages(conversation)``: week04's messages (an assistant turn is a
  list of text / tool-call / tool-output parts) as Hugging Face's: an
  assistant message per run of text and calls (``tool_calls`` with the tool's
  name and its input as the ``arguments`` string), a ``{"role": "tool"}``
  message per tool output. The template joins them back into one turn.

One difference stays: our renderer encodes each piece of text on its own, so
text that spells a special token (``<|assistant_end|>``) cannot forge one;
Hugging Face's tokenizer parses special tokens anywhere in the rendered text.
The tests use conversations without such text.

Left out: the reverse conversion (TRL output back into our format) and
tokenizers of other model families.
"""

from __future__ import annotations

from week04_modern_arch_tools.chat import SPECIALS, special_ids

CHAT_TEMPLATE = (
    "{{ '<|bos|>' }}"
    "{% for m in messages %}"
    "{% set prev = loop.previtem if not loop.first else none %}"
    "{% set nxt = loop.nextitem if not loop.last else none %}"
    "{% if m.role == 'system' %}{{ '<|user_start|>' + m.content + '\n\n' }}"
    "{% elif m.role == 'user' %}"
    "{% if not (prev and prev.role == 'system') %}{{ '<|user_start|>' }}{% endif %}"
    "{{ m.content + '<|user_end|>' }}"
    "{% else %}"
    "{% if m.role == 'assistant' and not (prev and prev.role in ('assistant', 'tool')) %}"
    "{{ '<|assistant_start|>' }}{% endif %}"
    "{% if m.role == 'tool' %}{{ '<|output_start|>' + m.content + '<|output_end|>' }}"
    "{% else %}"
    "{% generation %}{{ m.content or '' }}"
    "{% for c in (m.tool_calls or []) %}"
    "{{ '<|python_start|>' + c.function.name + ': ' + c.function.arguments + '<|python_end|>' }}"
    "{% endfor %}{% endgeneration %}"
    "{% endif %}"
    "{% if not nxt or nxt.role == 'user' %}{% generation %}{{ '<|assistant_end|>' }}"
    "{% endgeneration %}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant_start|>' }}{% endif %}"
)


def _byte_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (what byte-level BPE vocabularies use)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def to_hf_tokenizer(tok, chat_template: str = CHAT_TEMPLATE):
    """A ``transformers.PreTrainedTokenizerFast`` equal to our ``tok`` (see the docstring);
    bos ``<|bos|>``, eos ``<|assistant_end|>`` (a reply ends there), pad ``<|bos|>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    sp = special_ids(tok)
    table = _byte_unicode()
    vocab = {"".join(table[b] for b in piece): i for i, piece in enumerate(tok.vocab)}
    if len(vocab) != len(tok.vocab):
        raise ValueError("two tokens share their bytes; a byte-level BPE needs unique tokens")
    names = {i: s for s, i in vocab.items()}
    merges = [(names[a], names[b]) for (a, b), _ in sorted(tok.merges.items(), key=lambda kv: kv[1])]
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    core.decoder = decoders.ByteLevel()
    # the specials, in id order, right after the ordinary vocabulary (where ours sit)
    core.add_special_tokens([AddedToken(s, special=True, normalized=False)
                             for s in sorted(sp, key=sp.get)])
    hf = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|bos|>",
                                 eos_token="<|assistant_end|>", pad_token="<|bos|>",
                                 additional_special_tokens=[s for s in SPECIALS if s not in
                                                            ("<|bos|>", "<|assistant_end|>")])
    got = {s: hf.convert_tokens_to_ids(s) for s in SPECIALS}
    if got != sp:
        raise ValueError(f"special token ids differ after conversion: ours {sp}, Hugging Face "
                         f"{got}; the specials must follow the ordinary vocabulary in order")
    hf.chat_template = chat_template
    return hf


def to_hf_messages(conversation: list[dict]) -> list[dict]:
    """week04's messages as Hugging Face's (``tool_calls`` and ``tool`` messages)."""
    out: list[dict] = []
    for m in conversation:
        if m["role"] != "assistant" or isinstance(m["content"], str):
            out.append({"role": m["role"], "content": m["content"]})
            continue
        current = {"role": "assistant", "content": "", "tool_calls": []}
        for part in m["content"]:
            if part["type"] == "output":
                out.append(current)
                out.append({"role": "tool", "content": part["text"]})
                current = {"role": "assistant", "content": "", "tool_calls": []}
            elif part["type"] == "python":
                name, _, arg = part["text"].partition(":")
                current["tool_calls"].append({"type": "function", "function": {
                    "name": name.strip(), "arguments": arg.strip()}})
            else:
                if current["tool_calls"]:  # text after a call without an output: a new message
                    out.append(current)
                    current = {"role": "assistant", "content": "", "tool_calls": []}
                current["content"] += part["text"]
        if current["content"] or current["tool_calls"] or out[-1]["role"] == "tool":
            out.append(current)
    for m in out:
        if m.get("tool_calls") == []:
            m["tool_calls"] = None
    return out
