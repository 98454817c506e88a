"""The consolidation job (placeholder: the retrieval memory works without it)."""

from __future__ import annotations


class Job:
    def __init__(self, memory):
        self.memory = memory

    def status(self) -> dict:
        return {"state": "idle", "step": 0, "steps": 0, "topic": None, "error": None}

    def start(self, background: bool = True):
        raise NotImplementedError("consolidation lands in the next commit")

    def join(self) -> None:
        return None
