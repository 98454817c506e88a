"""Week 12 exercise, worked: ``fit``, the sliding context (see ../context.py for the task)."""

from __future__ import annotations


def fit(self, messages: list[dict], max_tokens: int, reserve: int = 0
        ) -> tuple[list[dict], int]:
    """Drop whole turns from the front, then cut the last message's front if still too long."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a conversation to answer ends with a user message")
    room = self.block_size - min(max_tokens, self.block_size // 4) - reserve
    head = messages[:1] if messages[0].get("role") == "system" else []
    rest = messages[len(head):]
    starts = [i for i, m in enumerate(rest) if m.get("role") == "user"]  # where a turn begins
    for i in starts:  # the earliest start that fits (the last one always qualifies)
        if len(self.prompt_ids(head + rest[i:])) <= room or i == starts[-1]:
            kept, dropped = head + rest[i:], i
            break
    if len(self.prompt_ids(kept)) <= room:
        return kept, dropped
    if head:  # one long message: the system message goes before the question is cut
        kept, dropped = kept[1:], dropped + 1
    last = kept[-1]
    ids = self.tokenizer.encode(last["content"])
    over = len(self.prompt_ids(kept)) - room
    return kept[:-1] + [{"role": "user", "content": self.tokenizer.decode(ids[over:])}], dropped
