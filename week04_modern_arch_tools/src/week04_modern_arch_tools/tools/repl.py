"""``PythonREPL``: a persistent Python interpreter the model can call, held by the kernel.

Each ``PythonREPL`` owns one worker process (``_sandbox_worker.py``, ``python -I``) in a
fresh work dir with an empty environment, in its own session. Where the walls come from
(``isolation.py`` has the details, ``SandboxConfig.isolation`` the choice):

- bubblewrap, when installed: own pid/network/IPC/UTS namespaces, a read-only view of the
  interpreter and nothing else, a size-capped tmpfs work dir, no ``/proc``;
- always (modes ``bwrap`` and ``kernel``): an unprivileged uid when the parent is root
  (and, without bubblewrap, private namespaces and a capped tmpfs made by the worker),
  Landlock (read the interpreter, read/write only the work dir) and a seccomp filter (no
  sockets, processes, exec, ptrace, device nodes, or signals/priority changes to others);
- rlimits: CPU seconds, address space, file size, open files;
- the audit hook, a courtesy layer: what the kernel would refuse anyway comes back as a
  ``SandboxViolation: blocked by the sandbox: <what>`` line (``refusals(output)`` lists
  them). It shares the process with the code, so it is no boundary; ``audit_hook=False``
  shows the kernel layers alone.

Without Landlock and seccomp ``PythonREPL()`` raises ``SandboxUnavailable`` naming what to
install, unless ``isolation="none"`` (rlimits and the audit hook only: unsafe, for code
you trust).

``run(code)`` returns what the code printed (stdout and stderr together), then the value
of a final expression, or the traceback, truncated to ``max_output`` characters, or an
``Error: ...`` line; it never raises and returns within ``timeout`` seconds (plus
``start_timeout`` when it must start a worker, plus about a second to stop one).
Variables persist between calls. Each request carries a fresh nonce: a reply without it,
a second reply, or a line nobody asked for means the worker was tampered with; it is
killed with everything it started and the next call gets a fresh one, as after a
timeout, crash or limit. ``close()`` never raises either, and leaves no process and no
work dir behind.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from week04_modern_arch_tools.tools.isolation import (
    SandboxUnavailable,
    bwrap_argv,
    choose_mode,
    remove_tree,
    support,
)

WORKER = Path(__file__).with_name("_sandbox_worker.py")
REFUSAL = "blocked by the sandbox: "  # the worker's refusal messages start with this
_REFUSAL_LINE = re.compile(r"^(?:SandboxViolation|SandboxImportViolation): "
                           + re.escape(REFUSAL) + r"(.*)$", re.MULTILINE)
UID_RANGE = (100_000, 165_535)  # unprivileged uids a root parent gives its workers


def refusals(output: str) -> list[str]:
    """What the sandbox refused in one ``PythonREPL.run`` reply, in order (``[]``: nothing).

    ``refusals("...SandboxViolation: blocked by the sandbox: os.system")`` -> ``["os.system"]``.
    """
    return _REFUSAL_LINE.findall(output)



@dataclass
class SandboxConfig:
    """Limits and walls of one REPL worker."""

    timeout: float = 5.0  # wall-clock seconds per call; the worker is killed after that
    cpu_seconds: int = 60  # CPU seconds over the worker's life (RLIMIT_CPU); then it is replaced
    memory_mb: int = 512  # address space (RLIMIT_AS)
    file_size_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    disk_mb: int = 64  # all of its work dir together (a tmpfs of this size)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output: int = 4000  # characters of output returned per call
    start_timeout: float = 20.0  # seconds for a fresh worker to report ready
    isolation: str = "auto"  # "auto" | "bwrap" | "kernel" | "none" (unsafe); see isolation.py
    audit_hook: bool = True  # the friendly-refusal layer (False: the kernel layers alone)
    uid: int | None = None  # the worker's uid when the parent is root (None: a random one)

    def __post_init__(self):
        for name in ("timeout", "cpu_seconds", "memory_mb", "file_size_mb", "disk_mb",
                     "max_open_files", "max_output", "start_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.uid is not None and not (isinstance(self.uid, int) and self.uid > 0):
            raise ValueError(f"SandboxConfig.uid must be a positive int (not root), got {self.uid!r}")


def descendants(pid: int) -> list[int]:
    """Host pids of every process under ``pid``, parents first (read from /proc)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent_of[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [], {pid}
    while frontier:
        kids = [p for p, pp in parent_of.items() if pp in frontier]
        out += kids
        frontier = set(kids)
    return out


class _Tampered(Exception):
    """The worker broke the protocol: it no longer speaks for the parent."""


class PythonREPL:
    """A persistent sandboxed Python session; satisfies ``shared.Tool`` (name "python")."""

    name = "python"

    def __init__(self, config: SandboxConfig | None = None, **limits):
        self.config = config or SandboxConfig(**limits)
        self.isolation = choose_mode(self.config.isolation)  # may raise SandboxUnavailable
        self.proc: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.restarts = 0  # workers replaced after a crash, timeout, limit or tampering
        self._worker_pid: int | None = None

    # -- worker lifecycle
    def _env(self) -> dict:
        return {"PATH": "/usr/bin:/bin", "HOME": self.workdir, "TMPDIR": self.workdir,
                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def _start(self, deadline: float) -> None:
        self.workdir = tempfile.mkdtemp(prefix="nanochat-repl-")
        root = os.geteuid() == 0
        uid = self.config.uid or (random.randint(*UID_RANGE) if root else os.getuid())
        nonce = secrets.token_hex(16)
        cfg = {k: v for k, v in asdict(self.config).items() if k not in ("timeout", "uid")}
        cfg.update(mode=self.isolation, workdir=self.workdir, uid=uid, nonce=nonce,
                   disk_bytes=self.config.disk_mb * 2**20)
        argv = [sys.executable, "-I", str(WORKER), json.dumps(cfg)]
        env = self._env()
        if self.isolation == "bwrap":
            sets = [a for k, v in env.items() for a in ("--setenv", k, v)]
            argv = bwrap_argv(support().bwrap, self.workdir, cfg["disk_bytes"]) + sets + argv
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True, close_fds=True)
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._buf = b""
        reply = self._read_line(deadline)
        if not isinstance(reply, dict) or reply.get("ready") != nonce or set(reply) != {"ready"}:
            self._kill()
            why = reply.get("failed") if isinstance(reply, dict) else None
            raise RuntimeError(f"the sandbox worker did not start ({why or 'no reply'}; "
                               f"isolation={self.isolation!r})")

    @property
    def worker_pid(self) -> int | None:
        """The host pid of the Python worker itself (inside bubblewrap: its innermost process)."""
        if not self.alive:
            return None
        if self.isolation != "bwrap":
            return self.proc.pid
        if self._worker_pid is None:
            kids = descendants(self.proc.pid)
            self._worker_pid = kids[-1] if kids else None
        return self._worker_pid

    def _kill(self) -> None:
        proc, self.proc, self._worker_pid = self.proc, None, None
        if proc is not None:
            others = descendants(proc.pid)
            for kill in ([lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill]
                         + [lambda p=p: os.kill(p, signal.SIGKILL) for p in others]):
                try:
                    kill()
                except OSError:
                    pass
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if self.workdir is not None:
            remove_tree(self.workdir)
            self.workdir = None

    def close(self) -> None:
        """Stop the worker and everything it started, delete its directory; never raises."""
        try:
            self._kill()
        except Exception:
            pass

    def reset(self) -> None:
        """Forget all state: the next call starts a fresh worker."""
        self.close()

    def __enter__(self) -> PythonREPL:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the pipe
    def _write(self, data: bytes, deadline: float) -> bool:
        """All of ``data`` to the worker before ``deadline``; False if it would not take it."""
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return False
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
        return True

    def _read_line(self, deadline: float):
        """One JSON line; None on timeout or EOF. ``_Tampered`` for garbage, a line too long,
        or anything after the line (one request, one reply)."""
        fd = self.proc.stdout.fileno()
        limit = 8 * self.config.max_output + 4096  # JSON escapes can grow text up to 6x
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker died
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                return None
            self._buf += chunk
            if len(self._buf) > limit:
                raise _Tampered("a reply longer than any the worker writes")
        line, self._buf = self._buf.split(b"\n", 1)
        if self._buf or self._pending():
            raise _Tampered("more than one reply")
        try:
            return json.loads(line)
        except ValueError:
            raise _Tampered("a reply that is not JSON") from None

    def _pending(self) -> bool:
        """Whether the worker wrote anything nobody asked for (its exit, EOF, is not that)."""
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], 0)[0]:
            return False
        extra = os.read(fd, 65536)
        if not extra:  # EOF: the worker is gone; reap it so alive says so
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        return bool(extra)

    # -- the tool
    def run(self, text: str) -> str:
        """Run ``text`` as Python in the session; the printed output or an error, never raises."""
        if not isinstance(text, str):
            return f"Error: code must be a string, got {type(text).__name__}"
        try:
            return self._run(text)
        except _Tampered as e:
            self.close()
            self.restarts += 1
            return (f"Error: the interpreter broke the reply protocol ({e}), so it was stopped; "
                    "the session was restarted and its state lost")
        except Exception as e:  # noqa: BLE001  (run never raises)
            self.close()
            return f"Error: could not reach the Python sandbox ({type(e).__name__}: {e})"

    def _run(self, text: str) -> str:
        if self.alive and self._pending():
            raise _Tampered("a line nobody asked for")
        if not self.alive:
            lost = self.proc is not None
            self.close()
            self._start(time.monotonic() + self.config.start_timeout)
            if lost:
                self.restarts += 1
        nonce = secrets.token_hex(16)
        deadline = time.monotonic() + self.config.timeout
        request = json.dumps({"id": nonce, "code": text}).encode() + b"\n"
        reply = self._read_line(deadline) if self._write(request, deadline) else None
        if isinstance(reply, dict):
            if reply.get("id") != nonce or not isinstance(reply.get("output"), str):
                raise _Tampered("a reply without this request's nonce")
            return reply["output"]
        timed_out = self.proc.poll() is None
        code = self.proc.returncode
        self.close()
        self.restarts += 1
        if timed_out:
            return (f"Error: timed out after {self.config.timeout:g} s; the interpreter was "
                    "restarted and its state lost")
        if self.isolation == "bwrap" and code is not None and code > 128:
            code = 128 - code  # bubblewrap exits 128 + N when its child died of signal N
        why = {-9: "killed (CPU time or memory limit)", -24: "CPU time limit exceeded",
               -11: "crashed (segmentation fault)",
               -31: "was killed by the seccomp filter (a system call of another ABI)"}.get(code, f"exited with status {code}")
        return f"Error: the interpreter {why}; it was restarted and its state lost"


__all__ = ["PythonREPL", "SandboxConfig", "SandboxUnavailable", "refusals"]
