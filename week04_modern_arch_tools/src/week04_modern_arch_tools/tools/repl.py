"""``PythonREPL``: a sandboxed, persistent Python interpreter the model can call.

Each ``PythonREPL`` owns one worker process (``_sandbox_worker.py``) started
with ``python -I`` (isolated: no PYTHON* variables, no user site) in a fresh
temp directory, with a scrubbed environment (no secrets inherited: only PATH,
HOME/TMPDIR pointing at the sandbox, and a UTF-8 locale), in its own session.
The worker applies resource limits (CPU seconds over its lifetime, address
space, file size, open files) and an audit hook that blocks network,
processes, signals, ctypes, threads and file access outside its directory;
see the worker's docstring for the full list.

``run(code)`` sends the code over a pipe and waits at most ``timeout``
seconds of wall-clock time. The reply is what the code printed (stdout and
stderr together), then the value of a final expression, or the traceback,
truncated to ``max_output`` characters. Variables persist between calls. A
worker that times out is killed; one that crashed, ran out of memory or CPU
time, or exited is noticed; either way the next call gets a fresh worker and
the reply says that the state was lost. ``run`` never raises.

What the sandbox refuses comes back as a traceback line of its own exception
types, ``SandboxViolation: blocked by the sandbox: <what>`` (a
``PermissionError``) or ``SandboxImportViolation: blocked by the sandbox:
import <name>`` (an ``ImportError``); ``refusals(output)`` lists the ``<what>``
of each. The code's own errors, the rlimits' (``MemoryError``, ``File too
large``) and the parent's ``Error: ...`` replies (timeout, crash) carry no such
line. The line is text the code could print itself, so it tells what was
refused, not that nothing else happened.

Left out: real isolation. The audit hook shares the process with the code it
guards, so this stops model mistakes and the usual escape attempts, not a
determined attacker; for hostile code, add a container/VM and seccomp.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("_sandbox_worker.py")
REFUSAL = "blocked by the sandbox: "  # the worker's refusal messages start with this
_REFUSAL_LINE = re.compile(r"^(?:SandboxViolation|SandboxImportViolation): "
                           + re.escape(REFUSAL) + r"(.*)$", re.MULTILINE)


def refusals(output: str) -> list[str]:
    """What the sandbox refused in one ``PythonREPL.run`` reply, in order (``[]``: nothing).

    ``refusals("...SandboxViolation: blocked by the sandbox: os.system")`` -> ``["os.system"]``.
    """
    return _REFUSAL_LINE.findall(output)


@dataclass
class SandboxConfig:
    """Limits of one REPL worker."""

    timeout: float = 5.0  # wall-clock seconds per call; the worker is killed after that
    cpu_seconds: int = 60  # CPU seconds over the worker's life (RLIMIT_CPU); then it is replaced
    memory_mb: int = 512  # address space (RLIMIT_AS)
    file_size_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output: int = 4000  # characters of output returned per call
    start_timeout: float = 20.0  # seconds for a fresh worker to report ready

    def __post_init__(self):
        for name in ("timeout", "cpu_seconds", "memory_mb", "file_size_mb", "max_open_files",
                     "max_output", "start_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxConfig.{name} must be > 0, got {getattr(self, name)!r}")


class PythonREPL:
    """A persistent sandboxed Python session; satisfies ``shared.Tool`` (name "python")."""

    name = "python"

    def __init__(self, config: SandboxConfig | None = None, **limits):
        self.config = config or SandboxConfig(**limits)
        self.proc: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.restarts = 0  # workers replaced after a crash or timeout

    # -- worker lifecycle
    def _env(self) -> dict:
        return {"PATH": "/usr/bin:/bin", "HOME": self.workdir, "TMPDIR": self.workdir,
                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}

    def _start(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="nanochat-repl-")
        cfg = {k: v for k, v in asdict(self.config).items() if k not in ("timeout",)}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), json.dumps(cfg)], cwd=self.workdir,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=self._env(), start_new_session=True, close_fds=True)
        reply = self._read_line(self.config.start_timeout)
        if reply is None or not reply.get("ready"):
            self._kill()
            raise RuntimeError("the sandbox worker did not start")

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def close(self) -> None:
        """Stop the worker and delete its directory."""
        self._kill()

    def reset(self) -> None:
        """Forget all state: the next call starts a fresh worker."""
        self._kill()

    def __enter__(self) -> PythonREPL:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self._kill()
        except Exception:
            pass

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the pipe
    def _read_line(self, timeout: float) -> dict | None:
        """One JSON reply, or None on timeout / EOF / garbage / a reply too large.

        On EOF the worker is reaped (so ``returncode`` says why it died).
        """
        fd = self.proc.stdout.fileno()
        limit = 8 * self.config.max_output + 4096  # JSON escapes can grow text up to 6x
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker died
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                return None
            data += chunk
            if len(data) > limit:
                return None
        try:
            reply = json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    # -- the tool
    def run(self, text: str) -> str:
        """Run ``text`` as Python in the session; the printed output or an error, never raises."""
        if not isinstance(text, str):
            return f"Error: code must be a string, got {type(text).__name__}"
        try:
            if not self.alive:
                lost = self.proc is not None
                self._kill()
                self._start()
                if lost:
                    self.restarts += 1
            self.proc.stdin.write(json.dumps({"code": text}).encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, RuntimeError, ValueError) as e:
            self._kill()
            return f"Error: could not reach the Python sandbox ({e})"
        reply = self._read_line(self.config.timeout)
        if reply is not None and isinstance(reply.get("output"), str):
            return reply["output"]
        timed_out = self.proc.poll() is None
        code = self.proc.returncode
        self._kill()
        self.restarts += 1
        if timed_out:
            return (f"Error: timed out after {self.config.timeout:g} s; the interpreter was "
                    "restarted and its state lost")
        why = {-9: "killed (CPU time or memory limit)", -24: "CPU time limit exceeded",
               -11: "crashed (segmentation fault)"}.get(code, f"exited with status {code}")
        return f"Error: the interpreter {why}; it was restarted and its state lost"
