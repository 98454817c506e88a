"""Chat with the speedrun's model in the terminal: ``python -m week12_nanochat.chat`` (``make chat``).

    python -m week12_nanochat.chat                      # the latest speedrun model, its tools
    python -m week12_nanochat.chat --model runs/speedrun/rl --memory runs/memory --temperature 0.7

Replies stream token by token. A tool call is shown apart from the words, as
the model writes it and then with the tool's output (``[calculator] 37 * 48``
and ``-> 1776``, coloured on a terminal). The conversation is multi-turn; when
it outgrows the model's block size the oldest turns slide out (the engine's
``fit``) and the chat says how many. Commands:

    /clear              forget the conversation (not the taught facts)
    /temperature T      sampling temperature (0 = greedy)
    /tools on|off       let the model call its tools, or not
    /teach TEXT         teach a fact (answers at once from memory; consolidated in the background)
    /forget ID|TEXT     forget a taught fact by its id, or the facts that match TEXT
    /facts              the taught facts and the consolidation job
    /adapters           the memory's adapters
    /help               this list
    /quit               leave (or Ctrl-D)

``ChatSession`` holds one conversation and handles one input line at a
time (what the tests drive); ``main`` is the loop around it.

Left out: line editing beyond what ``readline`` gives, saving conversations and
rendering markdown.
"""

from __future__ import annotations

import argparse
import sys

from week12_nanochat.engine import ChatEngine, NoModel, Sampling, open_engine

HELP = __doc__[__doc__.index("    /clear"):__doc__.index("``ChatSession``")].rstrip()
_COLOURS = {"call": "\033[36m", "output": "\033[33m", "info": "\033[2m", "end": "\033[0m"}


class ChatSession:
    """One conversation with ``engine``, written to ``out`` (coloured when ``colour``)."""

    def __init__(self, engine: ChatEngine, out=None, colour: bool = False,
                 sampling: Sampling | None = None):
        self.engine, self.out, self.colour = engine, out or sys.stdout, colour
        self.sampling = sampling or Sampling(max_tokens=256)
        self.messages: list[dict] = []
        self.tools = True

    # -- output
    def _write(self, text: str, kind: str | None = None) -> None:
        if self.colour and kind in _COLOURS:
            text = f"{_COLOURS[kind]}{text}{_COLOURS['end']}"
        self.out.write(text)
        self.out.flush()

    def info(self, text: str) -> None:
        self._write(text + "\n", "info")

    # -- one line of input
    def handle(self, line: str) -> bool:
        """Answer one input line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        self.say(line)
        return True

    def say(self, text: str):
        """Send a user message and stream the reply; returns the ``ChatReply``."""
        self.messages.append({"role": "user", "content": text})
        kind = None
        for event in self.engine.stream([self.messages], self.sampling, tools=self.tools):
            if event.kind == "done":
                reply = event.reply
                break
            if event.kind != kind:  # a new segment: calls and outputs on lines of their own
                if event.kind == "call":
                    self._write(("\n" if kind == "text" else "") + "[", "call")
                elif event.kind == "output":
                    self._write("]\n-> ", "call")
                elif kind == "output":
                    self._write("\n")
                kind = event.kind
            self._write(event.text, event.kind)
        if kind == "call":  # a call the token limit cut
            self._write("]", "call")
        self._write("\n")
        if reply.dropped:
            self.info(f"(the context is full: the {reply.dropped} oldest messages slid out)")
        if reply.memory:
            self.info(f"(answered with memory: {reply.memory})")
        if reply.finish_reason == "length":
            self.info(f"(cut at {self.sampling.max_tokens} tokens)")
        self.messages.append({"role": "assistant", "content": reply.text})
        return reply

    def command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        memory = self.engine.memory
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.info(HELP)
        elif name == "/clear":
            self.messages = []
            self.info("(a new conversation)")
        elif name == "/temperature":
            try:
                t = float(arg)
                self.sampling = Sampling(**{**vars(self.sampling), "temperature": t})
            except ValueError:
                self.info(f"usage: /temperature T with T a number >= 0 (0 = greedy); got {arg!r}")
            else:
                self.info(f"(temperature {t:g})")
        elif name == "/tools":
            if arg not in ("on", "off"):
                self.info(f"usage: /tools on|off; got {arg!r}")
            else:
                self.tools = arg == "on"
                self.info(f"(tools {arg}: {', '.join(self.engine.tools) or 'none'})")
        elif name in ("/teach", "/forget", "/facts", "/adapters") and memory is None:
            self.info("memory is off: start the chat with --memory DIR to teach and forget")
        elif name == "/teach":
            if not arg:
                self.info("usage: /teach TEXT, e.g. /teach My dog is called Rex.")
            else:
                facts = memory.teach(arg)
                memory.consolidate(background=True)
                for f in facts:
                    self.info(f"(learnt {f.id}: {f.text})")
        elif name == "/forget":
            if not arg:
                self.info("usage: /forget ID or /forget TEXT")
                return True
            known = {f.id for f in memory.facts()}
            gone = memory.forget(fact_id=arg) if arg in known else memory.forget(query=arg)
            self.info("\n".join(f"(forgot {f.id}: {f.text})" for f in gone)
                      or f"(no taught fact matches {arg!r})")
        elif name == "/facts":
            facts = memory.facts()
            self.info("\n".join(f"{f.id}  [{f.topic}] {f.text}" for f in facts)
                      or "(nothing taught yet)")
            self.info(f"(consolidation: {memory.status()})")
        elif name == "/adapters":
            names = memory.library.names()
            self.info("\n".join(names) or "(no adapters yet)")
        else:
            self.info(f"unknown command {name!r}; /help lists them")
        return True


# ---------------------------------------------------------------- the command


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m week12_nanochat.chat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a stage folder (default: the latest speedrun's model)")
    p.add_argument("--memory", help="a memory folder: /teach and /forget keep facts there")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--no-repl", action="store_true", help="no Python tool")
    return p


def main(argv: list[str] | None = None) -> int:
    a = make_parser().parse_args(argv)
    if a.temperature < 0 or a.max_tokens <= 0:
        print("error: --temperature must be >= 0 and --max-tokens > 0", file=sys.stderr)
        return 2
    try:
        engine, _ = open_engine(a.model, a.memory, repl=not a.no_repl)
    except (NoModel, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    session = ChatSession(engine, colour=sys.stdout.isatty(),
                          sampling=Sampling(temperature=a.temperature, max_tokens=a.max_tokens))
    session.info(f"nanochat ({engine.block_size}-token context, tools: "
                 f"{', '.join(engine.tools)}). /help lists the commands.")
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not session.handle(line):
                break
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
