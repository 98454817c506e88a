"""What kernel isolation this machine offers the REPL worker, and the command that starts it.

Three modes (``SandboxConfig.isolation``):

- ``"bwrap"``: bubblewrap (Debian package ``bubblewrap``) puts the worker in its own
  pid, network, IPC and UTS namespaces (a user namespace too when not root), with the
  interpreter and its libraries bound read-only, a minimal ``/dev``, no ``/proc``, a
  size-capped tmpfs as its work dir, an empty environment and no capabilities; its pid
  namespace dies with the parent. Inside, the worker adds everything ``"kernel"`` does.
- ``"kernel"``: no bubblewrap; the worker confines itself (``_confine.py``): its own
  mount/network/IPC/UTS namespaces and a capped tmpfs (as root directly, then an
  unprivileged uid; otherwise inside a user namespace of its own uid), then always
  Landlock (PyPI ``landlock``) and a seccomp filter (PyPI ``pyseccomp`` over libseccomp).
- ``"none"``: rlimits and the audit hook only. Not a boundary: for code you wrote yourself.

``"auto"`` (the default) picks ``"bwrap"`` when bubblewrap runs here, else ``"kernel"``;
with neither Landlock nor seccomp available ``choose_mode`` raises ``SandboxUnavailable``
saying what to install. ``remove_tree`` deletes a work dir whatever the code left there.

Left out: cgroups (memory and pids are held by rlimits and seccomp instead), and a disk cap
for a non-root parent without bubblewrap where the kernel refuses unprivileged user
namespaces (there only each file's size is capped).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

MODES = ("auto", "bwrap", "kernel", "none")
TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")  # merged-/usr links


class SandboxUnavailable(RuntimeError):
    """The isolation asked for cannot be had on this machine (the message says what to add)."""


@dataclass(frozen=True)
class Support:
    """What this machine offers; ``support()`` reads it once."""

    bwrap: str | None  # path of a bubblewrap that ran a test command here, or None
    landlock_abi: int  # 0: Landlock unavailable (module missing, kernel off)
    seccomp: bool  # pyseccomp imported and found libseccomp
    root: bool
    why: tuple[str, ...] = ()  # what is missing, in words

    @property
    def kernel(self) -> bool:
        return self.landlock_abi > 0 and self.seccomp


def _landlock_abi() -> tuple[int, str | None]:
    try:
        from landlock import landlock_abi_version
        return int(landlock_abi_version()), None
    except ImportError:
        return 0, "the Python package 'landlock' (pip install landlock; make setup installs it)"
    except Exception as e:  # the kernel has Landlock off
        return 0, f"Landlock in the kernel (5.13+, CONFIG_SECURITY_LANDLOCK, lsm=landlock): {e}"


def _seccomp() -> tuple[bool, str | None]:
    try:
        import pyseccomp  # noqa: F401
        return True, None
    except ImportError:
        return False, "the Python package 'pyseccomp' (pip install pyseccomp)"
    except Exception as e:  # libseccomp.so.2 not found
        return False, f"libseccomp (apt-get install libseccomp2): {e}"


@functools.lru_cache(maxsize=1)
def support() -> Support:
    why = []
    abi, w = _landlock_abi()
    why += [w] if w else []
    sc, w = _seccomp()
    why += [w] if w else []
    path = shutil.which("bwrap")
    if path is None:
        why.append("bubblewrap (apt-get install bubblewrap), for namespaces")
    else:
        try:
            ok = subprocess.run(bwrap_prefix(path) + ["--ro-bind", "/", "/", "true"],
                                capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            why.append(f"{path} is installed but cannot create namespaces here")
            path = None
    return Support(bwrap=path, landlock_abi=abi, seccomp=sc, root=os.geteuid() == 0,
                   why=tuple(why))


def choose_mode(requested: str) -> str:
    """The mode to run in for ``requested`` (one of ``MODES``), or ``SandboxUnavailable``."""
    if requested not in MODES:
        raise ValueError(f"SandboxConfig.isolation must be one of {MODES}, got {requested!r}")
    if requested == "none":
        return "none"
    s = support()
    if requested == "bwrap" and s.bwrap is None:
        raise SandboxUnavailable("isolation='bwrap' needs bubblewrap: apt-get install "
                                 "bubblewrap (" + "; ".join(s.why) + ")")
    if not s.kernel:
        raise SandboxUnavailable(
            "the Python REPL will not run model-written code without kernel isolation; "
            "missing: " + "; ".join(w for w in s.why if "bubblewrap" not in w)
            + ". Install it, or pass isolation='none' for code you trust (unsafe).")
    if requested == "auto":
        return "bwrap" if s.bwrap else "kernel"
    return requested


@functools.lru_cache(maxsize=1)
def interpreter_paths() -> tuple[str, ...]:
    """Every directory ``python -I`` reads modules from (its own sys.path and prefixes)."""
    out = subprocess.run([sys.executable, "-I", "-c", "import sys, json; print(json.dumps("
                          "[sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]"
                          " + sys.path))"], capture_output=True, text=True, timeout=30)
    paths = {os.path.realpath(p) for p in json.loads(out.stdout) if p and os.path.exists(p)}
    paths.add(os.path.dirname(os.path.realpath(__file__)))
    return tuple(sorted(p for p in paths if p != "/"))


def outermost(paths) -> list[str]:
    """``paths`` without any that lies under another one."""
    paths = sorted(set(paths))
    return [p for p in paths if not any(p.startswith(q.rstrip("/") + "/") for q in paths)]


def bwrap_prefix(path: str) -> list[str]:
    """bubblewrap's namespace options: as root no user namespace (the worker caps its tmpfs,
    then drops to its uid itself, which clears these capabilities); else all unshared."""
    if os.geteuid() == 0:
        return [path, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                "--cap-add", "CAP_SETGID", "--cap-add", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN"]
    return [path, "--unshare-all", "--cap-drop", "ALL"]


def bwrap_argv(path: str, workdir: str, disk_bytes: int) -> list[str]:
    """The bubblewrap options that build the worker's file system (see the module doc)."""
    argv = bwrap_prefix(path) + ["--die-with-parent", "--new-session", "--clearenv"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for link in TOP_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        argv += ["--ro-bind-try", f, f]
    made = set()

    def parents(p):  # 0755 directories down to p, so an unprivileged uid can pass
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                argv.extend(["--perms", "0755", "--dir", d])
                made.add(d)

    for p in outermost(p for p in interpreter_paths() if not p.startswith("/usr/")):
        parents(p)
        argv += ["--ro-bind", p, p]
    parents(workdir)
    argv += ["--dev", "/dev", "--perms", "0700", "--size", str(disk_bytes), "--tmpfs", workdir,
             "--chdir", workdir]
    return argv


def remove_tree(path: str, max_entries: int = 1_000_000) -> bool:
    """Delete ``path`` and everything in it without following links or recursing: each
    directory met is first moved up to the top, so depth, odd modes, FIFOs and symlinks
    cost nothing special. True if it is gone; never raises."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            return True
        os.chmod(path, 0o700)
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        todo, n, seen = [], 0, 0
        for e in os.scandir(top):
            todo.append(e.name)
        while todo and seen < max_entries:
            name = todo.pop()
            seen += 1
            try:
                st = os.lstat(name, dir_fd=top)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=top)
                    continue
                os.chmod(name, 0o700, dir_fd=top, follow_symlinks=False)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            except OSError:
                continue
            try:
                with os.scandir(fd) as it:
                    inner = [e.name for e in it]
                for child in inner:
                    seen += 1
                    try:
                        if stat.S_ISDIR(os.lstat(child, dir_fd=fd).st_mode):
                            n += 1
                            while os.path.lexists(os.path.join(path, f".rm-{n}")):
                                n += 1
                            flat = f".rm-{n}"
                            os.rename(child, flat, src_dir_fd=fd, dst_dir_fd=top)
                            todo.append(flat)
                        else:
                            os.unlink(child, dir_fd=fd)
                    except OSError:
                        pass
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=top)
            except OSError:
                todo.insert(0, name)  # still holds something; try again later
        os.close(top)
        top = None
        os.rmdir(path)
        return True
    except OSError:
        return False
    finally:
        if top is not None:
            os.close(top)
