"""Kernel confinement the REPL worker applies to itself before it reads any code.

Loaded by ``_sandbox_worker.py`` by file path (the worker runs ``python -I``), never by the
parent. In the order the worker calls them:

- ``private_mounts(workdir, disk_bytes, keep)`` (root, no bubblewrap): a private mount,
  network, IPC and UTS namespace; a size-capped tmpfs on the work dir; any directory on the
  way to ``keep`` (the interpreter, its libraries) that an unprivileged uid cannot enter is
  covered by a 0755 tmpfs with those paths bound back read-only.
- ``user_namespace(workdir, disk_bytes)`` (not root, no bubblewrap): the same namespaces and
  tmpfs inside a user namespace of its own uid, then no capabilities; skipped where the
  kernel allows no unprivileged user namespaces.
- ``recap_tmpfs(workdir, disk_bytes)`` (root, bubblewrap): the inode cap bubblewrap's
  ``--size`` leaves out.
- ``drop_privileges(uid)`` (root): no supplementary groups, then gid and uid; the kernel
  clears every capability when the last root uid goes.
- ``landlock(read_roots, workdir, devices)``: reads only under ``read_roots``, reads and
  writes only under ``workdir`` (no devices, FIFOs, sockets or symlinks made there), the
  ``devices`` (``/dev/null``, ``/dev/urandom``) read-write, execute nowhere. Everything
  else, ``/proc`` and the rest of the file system, is out of reach.
- ``seccomp(pid)``: a filter that fails with EPERM: sockets (``socketpair`` too: its
  datagrams reach host socket files), new processes and exec, ptrace and ``process_vm_*``,
  signals, priority, scheduling and limits of any process but this one, making another
  process the owner of a file's SIGIO (``F_SETOWN``), chmod/chown/utime/xattrs (Landlock
  does not cover metadata), mounts and namespaces, device nodes, io_uring, bpf, perf,
  keyrings, SysV and POSIX IPC, kernel modules, the other administrative calls, and every
  call newer than
  Linux 6.5 (number 451 on). ``clone3`` answers ENOSYS so the C library
  falls back to ``clone``, whose flags the filter can read: threads yes, processes no.

Left out: Landlock's network and signal scopes (ABI 4 and 6; seccomp already covers both),
and an allow-list filter (a deny-list keeps every library working; the list above is what
a contained process has no use for).
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.unshare.argtypes = (ctypes.c_int,)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x40000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWCGROUP, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x2000000, 0x80
CLONE_THREAD = 0x10000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE, MS_REMOUNT = \
    1, 2, 4, 8, 4096, 16384, 1 << 18, 32
PR_SET_DUMPABLE = 4
INODES = 4096  # files and directories a work dir may hold (each costs kernel memory)
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, dst, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {dst}")


def _blocked_ancestor(path: str) -> str | None:
    """The top-most directory above ``path`` that others may not enter (mode lacks o+x)."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def private_mounts(workdir: str, disk_bytes: int, keep: list[str], uid: int) -> None:
    """Own namespaces (root only) and a capped tmpfs on ``workdir``, owned by ``uid``."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = sorted(set(keep))
    keep = [p for p in keep if not any(p.startswith(q + "/") for q in keep)]  # outermost only
    covers: dict[str, list[str]] = {}
    for path in keep:
        top = _blocked_ancestor(path)
        if top is not None:
            covers.setdefault(top, []).append(path)
    for top, paths in covers.items():
        fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in paths}  # before covering
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for p, fd in sorted(fds.items()):
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            _mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            os.close(fd)
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={disk_bytes},nr_inodes={INODES},mode=0700,uid={uid},gid={uid}")
    os.chdir(workdir)  # the old cwd is the host directory under the new mount


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def user_namespace(workdir: str, disk_bytes: int) -> bool:
    """Not root: a user namespace (mapping only this uid and gid) with the same private
    namespaces and capped tmpfs as ``private_mounts``, then every capability it gave up.
    False (and nothing changed) where the kernel refuses unprivileged user namespaces."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
                     | CLONE_NEWUTS) != 0:
        return False
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={disk_bytes},nr_inodes={INODES},mode=0700,uid={uid},gid={gid}")
    os.chdir(workdir)
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")
    return True


def recap_tmpfs(workdir: str, disk_bytes: int) -> None:
    """bubblewrap's ``--size`` caps bytes only: remount (as root) with an inode cap too."""
    _mount(None, workdir, None, MS_REMOUNT | MS_NOSUID | MS_NODEV,
           f"size={disk_bytes},nr_inodes={INODES}")


def drop_privileges(uid: int) -> None:
    """Root -> ``uid`` with no groups and no capabilities; fails loudly if anything stays."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise OSError(errno.EPERM, "could not leave root")
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        pass
    else:
        raise OSError(errno.EPERM, "root could be regained")


def not_dumpable() -> None:
    """No core dumps, no ptrace or /proc/<pid>/mem from a process of the same uid."""
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def landlock(read_roots: list[str], workdir: str, devices: list[str]) -> int:
    """Apply the file-system rules above; returns the kernel's Landlock ABI version."""
    from landlock import FSAccess, Ruleset, landlock_abi_version

    abi = landlock_abi_version()
    ruleset = Ruleset()  # handles every access right this ABI knows: all denied by default
    read = FSAccess.READ_FILE | FSAccess.READ_DIR
    for root in read_roots:
        if os.path.isdir(root) or os.path.isfile(root):
            ruleset.allow(root, rules=read if os.path.isdir(root) else FSAccess.READ_FILE)
    files = FSAccess.READ_FILE | FSAccess.WRITE_FILE
    for dev in devices:
        if os.path.exists(dev):
            ruleset.allow(dev, rules=files)
    work = (files | FSAccess.READ_DIR | FSAccess.REMOVE_DIR | FSAccess.REMOVE_FILE
            | FSAccess.MAKE_DIR | FSAccess.MAKE_REG)
    if abi >= 2:
        work |= FSAccess.REFER
    if abi >= 3:
        work |= FSAccess.TRUNCATE
    ruleset.allow(workdir, rules=work)
    ruleset.apply()  # sets no_new_privs first
    return abi


DENIED = (  # EPERM whatever the arguments
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",  # no sockets at all
    "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr",
    "lremovexattr", "fremovexattr",  # metadata: Landlock does not hold it, so nowhere
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",  # SysV/POSIX IPC: host objects where no IPC namespace is
    "fork", "vfork", "execve", "execveat", "ptrace", "process_vm_readv",
    "process_vm_writev", "process_madvise", "kcmp", "pidfd_open", "pidfd_getfd",
    "pidfd_send_signal", "tkill", "mknod", "mknodat", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "mount_setattr", "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf",
    "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "init_module",
    "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "quotactl", "name_to_handle_at", "open_by_handle_at",
    "ioprio_set", "personality", "iopl", "ioperm", "modify_ldt", "vhangup", "syslog",
    "memfd_create", "memfd_secret", "setuid", "setgid", "setreuid", "setregid", "setresuid",
    "setresgid", "setgroups", "setfsuid", "setfsgid", "migrate_pages", "move_pages",
    "lookup_dcookie", "fanotify_init", "landlock_create_ruleset")
NEWER_THAN = 451  # every call from cachestat (451) on: numbered alike on all arches since 5.1,
# unknown to older libseccomp, and new ways to reach files or processes (fchmodat2, setxattrat,
# listmount, ...) are what a deny-list would otherwise miss; CPython and glibc use none of them
LAST_CALL = 600
FCNTL_OWNER = (8, 15)  # F_SETOWN, F_SETOWN_EX: the kernel would signal that pid (SIGIO/SIGURG)
IOCTL_OWNER = (0x8901, 0x8902, 0x540F)  # FIOSETOWN, SIOCSPGRP, TIOCSPGRP
NOT_OTHERS_ARG0 = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # arg0: a pid
NOT_NONZERO_ARG0 = ("sched_setaffinity", "sched_setscheduler", "sched_setparam",
                    "sched_setattr", "prlimit64")  # arg0 0 is "this process"


def seccomp(pid: int) -> None:
    """Load the filter described above; ``pid`` is this process as it sees itself."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(eperm, name)
        except OSError:  # a call this kernel/arch does not have
            pass
    for name in NOT_OTHERS_ARG0:
        f.add_rule(eperm, name, sc.Arg(0, sc.NE, pid))
    for name in NOT_NONZERO_ARG0:
        f.add_rule(eperm, name, sc.Arg(0, sc.NE, 0))
    f.add_rule(eperm, "setpriority", sc.Arg(0, sc.NE, 0))  # which: only PRIO_PROCESS (0),
    f.add_rule(eperm, "setpriority", sc.Arg(1, sc.NE, 0))  # who: only 0, this process
    f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))  # a new process
    for flag in (CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUSER,
                 CLONE_NEWPID, CLONE_NEWCGROUP, CLONE_NEWTIME):
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags sit in memory the filter can't read
    for req in (TIOCSTI, TIOCLINUX) + IOCTL_OWNER:  # typing into a terminal; signal owners
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.EQ, req))
    for cmd in FCNTL_OWNER:
        f.add_rule(eperm, "fcntl", sc.Arg(1, sc.EQ, cmd))
    for nr in range(NEWER_THAN, LAST_CALL):
        f.add_rule(eperm, nr)
    f.load()
