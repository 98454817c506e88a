"""The worker process behind ``PythonREPL`` (run as a script, never imported by the parent).

Started as ``python -I _sandbox_worker.py '<json config>'`` (inside bubblewrap when the
parent found it) with an empty environment. Before it reads any code it:

1. moves its protocol pipes off fds 0/1 and points fds 0, 1, 2 at /dev/null, so code
   that writes to the raw file descriptors cannot corrupt the replies;
2. ``kernel`` mode: its own mount, network, IPC and UTS namespaces and a size-capped
   tmpfs on the work dir (as root ``_confine.private_mounts``, else in a user namespace,
   ``_confine.user_namespace``, where the kernel allows one; bubblewrap does this in
   ``bwrap`` mode);
3. as root: drops to the unprivileged uid the parent chose (``_confine.drop_privileges``);
4. marks itself not dumpable, then applies Landlock and the seccomp filter
   (``_confine.landlock``, ``_confine.seccomp``); mode ``none`` skips 2-4 (unsafe);
5. sets resource limits: CPU seconds, address space, file size, open files, no core
   dumps, no new processes;
6. installs the audit hook (PEP 578) unless told not to: not a boundary (it shares the
   process with the code), a layer that turns what the kernel would refuse anyway into a
   readable ``SandboxViolation`` (see "Refusals" below).

Then it answers one JSON line per request on the pipe: ``{"id": n, "code": ...}`` ->
``{"id": n, "output": ...}``, the ``id`` the parent's nonce for that request. State (the
namespace) persists between requests.

Refusals. Everything the audit hook refuses raises ``SandboxViolation`` (a
``PermissionError``) or, for a blocked import, ``SandboxImportViolation`` (an
``ImportError``, so ``try: import x / except ImportError`` fallbacks still work); both
messages start with ``blocked by the sandbox: `` and name what was refused; the reply's
traceback keeps them even when library code wraps them, and ``repl.refusals(output)``
reads them back. What the kernel refuses is a plain ``PermissionError`` (EPERM/EACCES).
"""

import ast
import io
import json
import os
import resource
import signal
import sys
import sysconfig
import traceback
import types

# ---------------------------------------------------------------- setup

CONFIG = json.loads(sys.argv[1])
PROTO_IN = os.fdopen(os.dup(0), "rb", buffering=0)
PROTO_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
_null = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1, 2):
    os.dup2(_null, _fd)
os.close(_null)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write raises OSError instead of killing

_read_roots = set()
for _key in ("stdlib", "platstdlib", "purelib", "platlib"):
    _p = sysconfig.get_paths().get(_key)
    if _p and os.path.isdir(_p):
        _read_roots.add(os.path.realpath(_p))
for _p in sys.path:
    if _p and os.path.exists(_p) and os.path.realpath(_p) != "/":
        _read_roots.add(os.path.realpath(_p))
READ_ROOTS = tuple(sorted(_read_roots))  # what imports need; the audit hook reads it too
LIBRARY_ROOTS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache",
                 "/usr/share/zoneinfo", "/etc/localtime")  # dlopen and time zones
DEVICES = ["/dev/null", "/dev/urandom", "/dev/random"]
MODE = CONFIG["mode"]


def _confine_self():
    """Steps 2-4 of the module doc; any failure is reported to the parent, then exit."""
    global _confine
    if MODE != "none":
        _here = os.path.dirname(os.path.realpath(__file__))
        _spec = __import__("importlib.util").util.spec_from_file_location(
            "_confine", os.path.join(_here, "_confine.py"))
        _confine = __import__("importlib.util").util.module_from_spec(_spec)
        _spec.loader.exec_module(_confine)
        import landlock  # noqa: E402,F401  (both load their C libraries now, while that is allowed)
        import pyseccomp  # noqa: E402,F401

        if MODE == "kernel" and os.geteuid() == 0:
            _confine.private_mounts(CONFIG["workdir"], int(CONFIG["disk_bytes"]),
                                    [p for p in READ_ROOTS + (_here,)], int(CONFIG["uid"]))
        elif MODE == "kernel":
            _confine.user_namespace(CONFIG["workdir"], int(CONFIG["disk_bytes"]))
        elif MODE == "bwrap" and os.geteuid() == 0:
            _confine.recap_tmpfs(CONFIG["workdir"], int(CONFIG["disk_bytes"]))
            os.chown(CONFIG["workdir"], int(CONFIG["uid"]), int(CONFIG["uid"]))
        if os.geteuid() == 0:
            _confine.drop_privileges(int(CONFIG["uid"]))
        _confine.not_dumpable()
        _work = os.path.realpath(CONFIG["workdir"])
        _roots = [r for r in READ_ROOTS + LIBRARY_ROOTS + (_here,)  # none that holds the work dir
                  if os.path.exists(r) and not (_work + "/").startswith(os.path.realpath(r) + "/")]
        _confine.landlock(_roots, CONFIG["workdir"], DEVICES)
        _confine.seccomp(os.getpid())


try:
    _confine_self()
except BaseException as _e:  # the parent shows this instead of a bare "did not start"
    PROTO_OUT.write(json.dumps({"failed": f"{type(_e).__name__}: {_e}"}).encode() + b"\n")
    os._exit(1)
for _name in [m for m in sys.modules if m.split(".")[0] in (
        "ctypes", "_ctypes", "subprocess", "_posixsubprocess", "landlock", "pyseccomp")]:
    del sys.modules[_name]  # what confinement loaded; the code's own imports are audited
os.chdir(CONFIG["workdir"])
ROOT = os.path.realpath(os.getcwd())


def _limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass  # a limit the platform does not support; the parent's timeout still applies


_cpu = int(CONFIG["cpu_seconds"])
try:
    resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu + 1))  # SIGXCPU, then SIGKILL a second later
except (ValueError, OSError):
    pass
_limit(resource.RLIMIT_AS, int(CONFIG["memory_mb"]) * 2**20)
_limit(resource.RLIMIT_FSIZE, int(CONFIG["file_size_mb"]) * 2**20)
_limit(resource.RLIMIT_NOFILE, int(CONFIG["max_open_files"]))
_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_NPROC, 0)
READ_FILES = tuple(DEVICES)

# ---------------------------------------------------------------- the audit hook

REFUSAL = "blocked by the sandbox: "  # every refusal's message starts with this (repl.py too)


class SandboxViolation(PermissionError):
    """An operation the sandbox refused (raised by the audit hook and the stubs)."""


class SandboxImportViolation(ImportError):
    """An import the sandbox refused."""


BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.",
                    "os.fork", "pty.", "winreg.", "_winapi.")
BLOCKED_EVENTS = frozenset({
    "os.system", "os.kill", "os.killpg", "os.forkpty", "signal.pthread_kill", "os.startfile",
    "_thread.start_new_thread", "resource.setrlimit", "resource.prlimit",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "sys.setprofile", "sys.settrace", "os.chroot", "os.add_dll_directory", "os.symlink",
    "os.link", "webbrowser.open",
    # metadata: seccomp refuses these everywhere (Landlock cannot hold them); this says so
    "os.chmod", "os.chown", "os.utime", "os.setxattr", "os.removexattr", "os.chflags",
    "os.lchflags", "shutil.chown"})
METADATA_EVENTS = frozenset({"os.chmod", "os.chown", "os.utime", "os.setxattr",
                             "os.removexattr", "os.chflags", "os.lchflags", "shutil.chown"})
METADATA_NOTE = " (modes, owners and times stay as made here; shutil.copyfile copies without them)"
BLOCKED_IMPORTS = frozenset({"_posixsubprocess", "_ctypes", "ctypes", "_multiprocessing",
                             "_posixshmem", "pty"})
PATH_EVENTS = frozenset({  # event -> its first argument (and a second for rename/copy) is a path
    "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.rmdir", "os.remove", "os.rename",
    "os.truncate", "os.chmod", "os.chown", "os.utime", "os.chflags", "os.lchflags",
    "os.setxattr", "os.removexattr", "os.listxattr", "os.getxattr", "shutil.rmtree",
    "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move",
    "shutil.chown", "shutil.make_archive", "shutil.unpack_archive", "glob.glob"})
READ_ONLY_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.listxattr",
                              "os.getxattr", "shutil.copyfile", "shutil.copytree"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _resolve(path):
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None
    return os.path.realpath(os.path.join(os.getcwd(), path))


def _check(cfg, event, args):
    """The audit hook; ``cfg`` is an immutable tuple bound as the method's ``self``."""
    _root, _read, _files, _prefixes, _events, _imports, _paths, _ro, _wflags, _no, _no_import, \
        _why = cfg
    if event in _events or event.startswith(_prefixes):
        raise _no(f"{_why}{event}" + (METADATA_NOTE if event in METADATA_EVENTS else ""))
    if event == "object.__setattr__":  # rewriting this worker's functions (this hook included)
        if callable(args[0]) and getattr(args[0], "__module__", None) == "__main__":
            raise _no(f"{_why}setting {args[1]} of a sandbox function")
        return
    if event == "import":
        name = args[0] or ""
        if name in _imports or name.split(".")[0] in _imports:
            raise _no_import(f"{_why}import {name}")
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if isinstance(path, int) or path is None:
            return  # an already opened descriptor: its open went through this hook
        real = _resolve(path)
        if real is None:
            raise _no(f"{_why}open({path!r})")
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & _wflags)
        if _inside(real, _root) or (not writing and (_inside(real, _read) or real in _files)):
            return
        what = "writing" if writing else "reading"
        raise _no(f"{_why}{what} {path!r} (outside the sandbox directory)")
    if event in _paths:
        for arg in args[:2] if event in ("os.rename", "shutil.copyfile", "shutil.copytree",
                                         "shutil.move") else args[:1]:
            real = _resolve(arg)
            if real is None:
                if isinstance(arg, int):
                    continue
                raise _no(f"{_why}{event}({arg!r})")
            ok = _inside(real, _root) or (event in _ro and _inside(real, _read))
            if not ok:
                raise _no(f"{_why}{event} outside the sandbox directory ({arg!r})")


# a method bound to a tuple: neither its configuration nor the binding can be reassigned
_hook = types.MethodType(_check, ((ROOT,), READ_ROOTS, READ_FILES, BLOCKED_PREFIXES,
                                  BLOCKED_EVENTS, BLOCKED_IMPORTS, PATH_EVENTS, READ_ONLY_EVENTS,
                                  WRITE_FLAGS, SandboxViolation, SandboxImportViolation, REFUSAL))
if CONFIG.get("audit_hook", True):
    sys.addaudithook(_hook)

# functions that kill or start processes: replaced by stubs (some raise no audit event)
import _thread  # noqa: E402
import posix  # noqa: E402


def _stub(what):
    def blocked(*args, **kwargs):
        raise SandboxViolation(f"{REFUSAL}{what}")

    return blocked


for _mod in (os, posix, signal) if CONFIG.get("audit_hook", True) else ():
    for _name in ("pidfd_open", "pidfd_send_signal", "kill", "killpg", "fork", "forkpty",
                  "setuid", "setgid", "setresuid", "setresgid"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _stub(f"{_mod.__name__}.{_name}"))
for _name in ("start_new_thread", "start_joinable_thread", "start_new"):
    if hasattr(_thread, _name) and CONFIG.get("audit_hook", True):
        setattr(_thread, _name, _stub("starting a thread"))
if "threading" in sys.modules and CONFIG.get("audit_hook", True):  # imported during setup
    sys.modules["threading"]._start_new_thread = _stub("starting a thread")

# ---------------------------------------------------------------- the REPL loop


class _Capped(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self):
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n... [output truncated: {self.dropped} more characters]"
        return out


def _format_one(e):
    if isinstance(e, SyntaxError):
        return "".join(traceback.format_exception_only(type(e), e))
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if f.filename != __file__ and not f.filename.endswith("ast.py")]
    return ("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
            + "".join(traceback.format_exception_only(type(e), e)))


def format_error(e):
    """The traceback of the user's code, the worker's own frames (and ast's) left out.

    Exceptions it was chained to come first as their one-line summaries (Python
    prints their whole tracebacks), so a refusal that library code wrapped keeps its
    ``SandboxViolation: ...`` line without crowding out the final traceback.
    """
    chain, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ if e.__cause__ is not None else \
            (None if e.__suppress_context__ else e.__context__)
    parts = []
    for older, newer in zip(chain[:0:-1], chain[-2::-1]):   # oldest first
        parts.append("".join(traceback.format_exception_only(type(older), older)))
        parts.append("\nThe above exception was the direct cause of the following exception:\n\n"
                     if newer.__cause__ is older else
                     "\nDuring handling of the above exception, another exception occurred:\n\n")
    return "".join(parts) + _format_one(chain[0])


def run_cell(code, namespace):
    """Run ``code``; echo the value of a final expression like the interactive prompt."""
    tree = ast.parse(code, "<repl>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<repl>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<repl>", "eval"), namespace)
        if value is not None:
            print(repr(value))


def main():
    namespace = {"__name__": "__repl__", "__builtins__": __builtins__}
    limit = int(CONFIG["max_output"])
    PROTO_OUT.write(json.dumps({"ready": CONFIG["nonce"]}).encode() + b"\n")
    buf = b""
    while True:
        chunk = PROTO_IN.read(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            request = json.loads(line)
            rid, code = request["id"], request["code"]
            out = _Capped(limit)
            sys.stdout = sys.stderr = out
            try:
                run_cell(code, namespace)
            except SystemExit as e:
                out.write(f"SystemExit: {e.code}\n")
            except BaseException as e:  # the user's error is the tool's output
                out.write(format_error(e))
            finally:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            text = out.text()
            out = None
            PROTO_OUT.write(json.dumps({"id": rid, "output": text}).encode() + b"\n")


main()
