"""Conversations to tokens (with a loss mask), and generation that calls tools.

The format, with week02's special tokens and nothing between them (no
newlines are added; every piece of text is encoded as ordinary bytes, so a
message or tool output that contains the text ``<|assistant_end|>`` cannot
forge a special token)::

    <|bos|>
    <|user_start|>USER TEXT<|user_end|>
    <|assistant_start|>TEXT<|python_start|>TOOL: INPUT<|python_end|>
        <|output_start|>TOOL OUTPUT<|output_end|>TEXT<|assistant_end|>
    <|user_start|>...                       (more turns)

``messages`` is a list of ``{"role": "user" | "assistant" | "system",
"content": ...}``. A system message may only come first; its text is put in
front of the first user message (separated by a blank line). Roles then
alternate user, assistant, user, ... A user's content is a string. An
assistant's content is a string or a list of parts:

- ``{"type": "text", "text": ...}``: what the assistant says;
- ``{"type": "python", "text": "calculator: 2+2"}``: a tool call, the tool's
  name, a colon, then its input (``python: print(1)``, ``search: ...``);
- ``{"type": "output", "text": ...}``: the tool's answer.

The mask is 1 on the tokens the model is trained to produce: the assistant's
text, its tool calls including ``<|python_start|>`` and ``<|python_end|>``,
and ``<|assistant_end|>``. It is 0 on ``<|bos|>``, the user turns,
``<|assistant_start|>`` (the prompt asks for the reply) and the whole
``<|output_start|>...<|output_end|>`` span (at inference the tool writes it).

``generate_with_tools`` runs the model on a batch of prompts through week01's
one decoding loop (left-padded, one token per row per step, KV cache by
default): when a row completes a
``<|python_start|>...<|python_end|>`` span, the named tool runs and its
output is queued, wrapped in ``<|output_start|>...<|output_end|>``, as tokens
the row is forced to take on its next steps; then sampling resumes. A row
stops at ``<|assistant_end|>``. A tool error, an unknown tool or a malformed
call becomes the output text; nothing raises.

``ToolDecoding`` is the same generation as an iterator of per-step token
events (what a server streams). Built with ``continuous=True`` it takes new
prompts while it runs (``add(prompts, tools=..., max_new_tokens=...)``, week01's
``Decoding.add``): they join at the next step and call tools like every row.

Left out: multi-call parallel tool use and chat templates of other model families.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from week01_transformer import DecodeConfig, Decoding
from week01_transformer.decoding import CannotAdd

SPECIALS = ("<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>",
            "<|assistant_end|>", "<|python_start|>", "<|python_end|>", "<|output_start|>",
            "<|output_end|>")


def special_ids(tokenizer) -> dict[str, int]:
    """The id of each chat special token; a clear error if the tokenizer lacks one."""
    table = getattr(tokenizer, "special_tokens", None) or {}
    missing = [s for s in SPECIALS if s not in table]
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing}; train it with "
                         "week02_bpe.SPECIAL_TOKENS")
    return {s: table[s] for s in SPECIALS}


# ---------------------------------------------------------------- rendering


def _parts(message: dict, i: int) -> list[dict]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError(f"message {i}: content must be a string or a list of parts, "
                         f"got {type(content).__name__}")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "python", "output") \
                or not isinstance(part.get("text"), str):
            raise ValueError(f"message {i}, part {j}: each part is a dict with type 'text', "
                             f"'python' or 'output' and a string 'text', got {part!r}")
    return content


def _normalise(messages: list[dict]) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    messages = list(messages)
    if messages[0].get("role") == "system":
        if len(messages) < 2 or messages[1].get("role") != "user":
            raise ValueError("a system message must be followed by a user message")
        system, first = messages[0], messages[1]
        if not isinstance(system.get("content"), str) or not isinstance(first.get("content"), str):
            raise ValueError("system and user contents must be strings")
        messages = [{"role": "user", "content": system["content"] + "\n\n" + first["content"]},
                    *messages[2:]]
    for i, m in enumerate(messages):
        want = "user" if i % 2 == 0 else "assistant"
        if not isinstance(m, dict) or m.get("role") != want:
            got = m.get("role") if isinstance(m, dict) else type(m).__name__
            raise ValueError(f"message {i} must have role {want!r} (roles alternate user, "
                             f"assistant, ...; a system message may only come first), got {got!r}")
        if want == "user" and not isinstance(m.get("content"), str):
            raise ValueError(f"message {i}: a user's content must be a string")
    return messages


def render_conversation(messages: list[dict], tokenizer,
                        max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and the loss mask (1 = trained) of a conversation; see the module docstring."""
    sp = special_ids(tokenizer)
    messages = _normalise(messages)
    ids: list[int] = []
    mask: list[int] = []

    def add(tokens, m):
        ids.extend(tokens)
        mask.extend([m] * len(tokens))

    add([sp["<|bos|>"]], 0)
    for i, message in enumerate(messages):
        if message["role"] == "user":
            add([sp["<|user_start|>"]], 0)
            add(tokenizer.encode(message["content"]), 0)
            add([sp["<|user_end|>"]], 0)
            continue
        add([sp["<|assistant_start|>"]], 0)
        for part in _parts(message, i):
            if part["type"] == "text":
                add(tokenizer.encode(part["text"]), 1)
            elif part["type"] == "python":
                add([sp["<|python_start|>"]], 1)
                add(tokenizer.encode(part["text"]), 1)
                add([sp["<|python_end|>"]], 1)
            else:
                add([sp["<|output_start|>"]], 0)
                add(tokenizer.encode(part["text"]), 0)
                add([sp["<|output_end|>"]], 0)
        add([sp["<|assistant_end|>"]], 1)
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return ids, mask


def render_for_completion(messages: list[dict], tokenizer) -> list[int]:
    """The prompt ids for the assistant's next reply: the conversation so far, then
    ``<|assistant_start|>``. A trailing assistant message (e.g. the reference
    answer of a test example) is dropped."""
    messages = _normalise(messages)
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    ids, _ = render_conversation(messages, tokenizer)
    return ids + [special_ids(tokenizer)["<|assistant_start|>"]]


# ---------------------------------------------------------------- tool calls


def parse_tool_call(text: str) -> tuple[str, str]:
    """``"calculator: 2+2"`` -> ``("calculator", "2+2")``; ValueError if there is no name."""
    name, sep, arg = text.partition(":")
    name = name.strip().lower()
    if not sep or not name or not name.replace("_", "").isalnum():
        raise ValueError("a tool call is written 'name: input', e.g. 'calculator: 2+2'")
    return name, arg.strip("\n ")


def call_tool(text: str, tools: dict) -> tuple[str, str, str]:
    """Run the call written in ``text``; (name, input, output text). Never raises."""
    try:
        name, arg = parse_tool_call(text)
    except ValueError as e:
        return "", text, f"Error: {e}"
    tool = tools.get(name)
    if tool is None:
        return name, arg, f"Error: unknown tool {name!r}; available: {', '.join(sorted(tools))}"
    try:
        out = tool.run(arg)
    except Exception as e:  # a tool must not raise, but the model's text must never crash us
        out = f"Error: {type(e).__name__}: {e}"
    return name, arg, out if isinstance(out, str) else str(out)


@dataclass
class ToolCall:
    name: str
    input: str
    output: str


@dataclass
class ToolRun:
    """One prompt's generation: new ids (sampled and forced), their text, the calls made."""

    prompt: list[int]
    ids: list[int] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)  # True where a tool output was forced
    calls: list[ToolCall] = field(default_factory=list)
    finished: bool = False  # reached <|assistant_end|>
    text: str = ""

    def answer(self, tokenizer) -> str:
        """The assistant's own text after the last tool output (no special tokens)."""
        sp = special_ids(tokenizer)
        ids = self.ids
        if sp["<|output_end|>"] in ids:
            ids = ids[len(ids) - ids[::-1].index(sp["<|output_end|>"]):]
        return tokenizer.decode([i for i in ids if i not in sp.values()])


def _prompt_ids(prompt, tokenizer) -> list[int]:
    if isinstance(prompt, str):
        return render_for_completion([{"role": "user", "content": prompt}], tokenizer)
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
        return render_for_completion(prompt, tokenizer)
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(t, int) for t in prompt):
        return list(prompt)
    raise ValueError("each prompt must be a user message (str), a list of messages, or a "
                     f"non-empty list of token ids; got {prompt!r:.80}")


# ---------------------------------------------------------------- generation


class ToolDecoding:
    """``generate_with_tools`` as an object: iterate it for week01's per-step ``TokenEvent``
    lists (a server streams them), then read ``runs``. ``on_keep`` is passed on to the
    decoding loop (per-row state outside the cache follows the rows that stay);
    ``continuous=True`` lets ``add`` put new prompts into the running batch; ``seeds`` (one per
    prompt, and ``add``'s) gives each row its own generator (week01's ``Decoding(seeds=)``)."""

    def __init__(self, model, tokenizer, prompts, tools: dict, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int = 0, use_cache: bool = True, max_output_tokens: int = 128,
                 on_keep=None, continuous: bool = False, seeds=None):
        if isinstance(prompts, (str, dict)) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        self.tokenizer, self.tools, self.max_output_tokens = tokenizer, tools, max_output_tokens
        self.sp = special_ids(tokenizer)
        self.runs = [ToolRun(_prompt_ids(p, tokenizer)) for p in prompts]
        self.decoding = None
        self.max_new_tokens = max_new_tokens
        self._row_tools: list[dict | None] = [None] * len(self.runs)  # None: ``self.tools``
        if not self.runs:
            return
        L = max(len(r.prompt) for r in self.runs)
        limit = self.block_size = model.config.block_size
        if L >= limit:
            raise ValueError(f"the longest prompt has {L} tokens; the model's block_size is "
                             f"{limit}")
        self._in_call: list[list[int] | None] = [None] * len(self.runs)
        cfg = DecodeConfig(max_new_tokens=min(max_new_tokens, limit - L), temperature=temperature,
                           top_k=top_k, top_p=top_p, seed=seed, use_cache=use_cache,
                           stop_tokens=(self.sp["<|assistant_end|>"],))
        self.decoding = Decoding(model, [r.prompt for r in self.runs], cfg,
                                 on_token=self._on_token, on_keep=on_keep,
                                 continuous=continuous, seeds=seeds)

    def add(self, prompts, tools: dict | None = None, max_new_tokens: int | None = None,
            seeds=None) -> list[int]:
        """Put ``prompts`` (as the constructor takes them) into the running batch; their
        indices in ``runs``. ``tools`` (default: this decoding's) are the tools the new rows
        may call, ``max_new_tokens`` (default: the constructor's) their own limit, cut to
        what the block leaves after each prompt. ``CannotAdd`` (week01) when they cannot
        join: the caller starts a new batch."""
        if self.decoding is None:
            raise CannotAdd("this ToolDecoding has no batch to add to (it had no prompts)")
        if isinstance(prompts, (str, dict)) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        new = [ToolRun(_prompt_ids(p, self.tokenizer)) for p in prompts]
        if not new:
            raise ValueError("add needs at least one prompt")
        L = max(len(r.prompt) for r in new)
        if L >= self.block_size:
            raise ValueError(f"the longest prompt has {L} tokens; the model's block_size is "
                             f"{self.block_size}")
        limit = min(self.max_new_tokens if max_new_tokens is None else max_new_tokens,
                    self.block_size - L)
        rows = self.decoding.add([r.prompt for r in new], max_new_tokens=limit, seeds=seeds)
        self.runs += new
        self._in_call += [None] * len(new)
        self._row_tools += [None if tools is None else dict(tools)] * len(new)
        return rows

    def _on_token(self, b: int, tok: int, forced: bool):
        """Collect a call's tokens; when it ends, run the tool and force its output."""
        sp, in_call = self.sp, self._in_call
        if forced:
            return None
        if tok == sp["<|python_start|>"]:
            in_call[b] = []
        elif tok == sp["<|python_end|>"] and in_call[b] is not None:
            tools = self._row_tools[b] if self._row_tools[b] is not None else self.tools
            name, arg, out = call_tool(self.tokenizer.decode(in_call[b]), tools)
            self.runs[b].calls.append(ToolCall(name, arg, out))
            in_call[b] = None
            body = self.tokenizer.encode(out)[:self.max_output_tokens]
            return [sp["<|output_start|>"], *body, sp["<|output_end|>"]]
        elif in_call[b] is not None:
            in_call[b].append(tok)
        return None

    def __iter__(self):
        if self.decoding is not None:
            yield from self.decoding
            self._finish()

    def _finish(self) -> None:
        for run, row in zip(self.runs, self.decoding.rows):
            run.ids, run.forced, run.finished = row.ids, row.forced, row.finished
            run.text = self.tokenizer.decode(run.ids)

    def run(self) -> list[ToolRun]:
        for _ in self:
            pass
        return self.runs


def generate_with_tools(model, tokenizer, prompts, tools: dict, max_new_tokens: int = 256,
                        temperature: float = 0.0, top_k: int | None = None,
                        top_p: float | None = None, seed: int = 0, use_cache: bool = True,
                        max_output_tokens: int = 128) -> list[ToolRun]:
    """Generate replies for a batch of prompts, running tool calls as they complete.

    ``prompts``: user messages (str), conversations (lists of messages) or
    token-id lists. ``tools``: ``{name: Tool}``. ``max_new_tokens`` counts
    every appended token, forced tool outputs included; a tool output is cut
    to ``max_output_tokens`` tokens. Greedy (``temperature=0``) by default.
    Runs week01's decoding loop: ``<|assistant_end|>`` is its stop token, and
    its ``on_token`` hook watches each row for a finished call and forces the
    tool's output (``ToolDecoding`` is the same, streamed).
    """
    return ToolDecoding(model, tokenizer, prompts, tools, max_new_tokens, temperature, top_k,
                        top_p, seed, use_cache, max_output_tokens).run()
