"""week04_modern_arch_tools.tools: the tools a model may call, each a ``shared.Tool``.

- ``Calculator``: arithmetic parsed with ``ast`` (no ``eval``), exact integers and fractions
- ``PythonREPL`` + ``SandboxConfig``: a persistent interpreter in a worker the kernel holds
  (bubblewrap when installed, Landlock + seccomp always; ``SandboxUnavailable`` without them)
- ``Search``: BM25 over pydocs passages or your own files

``default_tools()`` is the ``{name: tool}`` table ``generate_with_tools`` takes.
"""

from week04_modern_arch_tools.tools.calculator import Calculator
from week04_modern_arch_tools.tools.repl import PythonREPL, SandboxConfig, SandboxUnavailable
from week04_modern_arch_tools.tools.search import Search


def default_tools(search: Search | None = None, repl: PythonREPL | None = None) -> dict:
    """``{"calculator": ..., "python": ..., "search": ...}`` (a pydocs ``Search`` and a fresh
    ``PythonREPL`` unless given; the caller closes the REPL)."""
    return {"calculator": Calculator(), "python": repl or PythonREPL(),
            "search": search or Search()}


__all__ = ["Calculator", "PythonREPL", "SandboxConfig", "SandboxUnavailable", "Search",
           "default_tools"]
