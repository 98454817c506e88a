"""Attacks on the PythonREPL sandbox, judged by the harm seen from outside it.

The workers run with ``audit_hook=False``, as if the code had already beaten that courtesy
layer, so attacks use ctypes and raw x86_64 syscalls freely; each test runs in every kernel
mode this machine has ("bwrap", "kernel"). No test decides by error text: a marker file
outside must not appear; secrets (in this process's environment, in a file outside, in
another REPL, in a victim's memory) must not come back in any output; the listeners (TCP
on 127.0.0.1, AF_UNIX abstract and pathname) must get nothing; a victim process of the
worker's OWN uid (so plain uid checks do not protect it, only the sandbox does) must stay
alive with its nice value, affinity, tracer and limits unchanged; this process must get no
SIGUSR1; no process may outlive ``close()``; ``run()`` returns a str in bounded time.
Every attack stays bounded if the sandbox failed: one fork whose child sleeps 2 s, finite
loops, SIGUSR1 (caught here) rather than SIGKILL at this process, and what would reach all
processes of a uid runs only when the worker really has the unprivileged uid.
A hole found is ``xfail(strict=True, reason="HOLE: ...")``.
"""

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from week04_modern_arch_tools import PythonREPL
from week04_modern_arch_tools.tools.isolation import remove_tree, support

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

UID = 150_001  # the workers' uid (in repl.UID_RANGE), shared with the victim process
ENV_SECRET, FILE_SECRET, VICTIM_SECRET = (f"{w}secret-{secrets.token_hex(8)}"
                                          for w in ("env", "file", "victim"))
LIMITS = dict(timeout=10, memory_mb=512, file_size_mb=2, disk_mb=8, max_output=100_000,
              audit_hook=False, uid=UID)
PRELUDE = """\
import ctypes, fcntl, json, os, resource, signal, socket, stat, struct, sys, time
os.chdir(sys.modules['__main__'].CONFIG['workdir'])
libc = ctypes.CDLL(None, use_errno=True)
def sys_(nr, *args):  # a raw x86_64 syscall -> (return value, errno)
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return libc.syscall(ctypes.c_long(nr), *args), ctypes.get_errno()
def attempt(what, f, *args):  # print what one try returned or raised, and go on
    try: print(what, '->', f(*args))
    except BaseException as e: print(what, '-> raised', type(e).__name__, e)
def inet(port): return struct.pack('<HH4s8x', 2, socket.htons(port), bytes([127, 0, 0, 1]))
def iov(addr, n): return (ctypes.c_void_p * 2)(addr, n)
def read_other(pid, addr, n):  # process_vm_readv of n bytes at addr
    buf = ctypes.create_string_buffer(n)
    return sys_(310, pid, iov(ctypes.addressof(buf), n), 1, iov(addr, n), 1, 0), buf.raw
"""
HOLES = {  # variant -> (modes where it gets out, how); empty: every attack here is contained
}
# Closed after this file found them (kernel mode): F_SETOWN + O_ASYNC signalling a same-uid
# process, chmod/utime/setxattr on a same-uid file outside, socketpair datagrams to host socket
# files. seccomp now refuses F_SETOWN, path and fd metadata calls, and socketpair.


def hole(request, mode, name):
    if name in HOLES and mode in HOLES[name][0].split():
        request.applymarker(pytest.mark.xfail(strict=True, reason="HOLE: " + HOLES[name][1]))


def attack(repl, code, **values):
    """Run PRELUDE, ``name = repr(value)`` lines, then ``code``; never the env secret back."""
    setup = "".join(f"{k} = {os.fspath(v) if isinstance(v, Path) else v!r}\n"
                    for k, v in values.items())
    out = repl.run(PRELUDE + setup + code)
    assert isinstance(out, str) and ENV_SECRET not in out
    return out


def pid_of(repl):
    if not repl.alive:  # an earlier attack may have cost the worker its life
        assert repl.run("1") == "1\n"
    return repl.worker_pid


def stat_fields(pid):
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # [0]: field 3


def procs():
    """(pid, parent pid, command line) of every process but this one."""
    for e in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(e) != os.getpid():
                yield int(e), int(stat_fields(e)[1]), Path(f"/proc/{e}/cmdline").read_bytes()
        except (OSError, IndexError):
            pass


def gone(pid, within=5.0):
    """``pid`` left /proc (or is a zombie, which holds nothing) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if stat_fields(pid)[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def env_secret():
    with pytest.MonkeyPatch.context() as mp:  # before any worker starts
        mp.setenv("SANDBOX_TEST_SECRET", ENV_SECRET)
        yield


@pytest.fixture(scope="module", params=["bwrap", "kernel"])
def mode(request):
    s = support()
    if request.param == "bwrap" and s.bwrap is None:
        pytest.skip("bubblewrap is missing: apt-get install bubblewrap")
    if not s.kernel:
        pytest.skip("kernel isolation is missing: " + "; ".join(s.why))
    return request.param


@pytest.fixture(scope="module")
def repl(mode):
    r = PythonREPL(isolation=mode, **LIMITS)
    assert r.run("1") == "1\n"
    yield r
    r.close()


@pytest.fixture
def fresh(mode):
    made = []

    def make(**kw):
        made.append(PythonREPL(isolation=mode, **{**LIMITS, **kw}))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(scope="module")
def outside():
    """A world-writable dir (only the sandbox keeps the worker's uid out), a readable secret."""
    d = Path(tempfile.mkdtemp(prefix="sandbox-outside-", dir="/tmp"))
    d.chmod(0o777)
    (d / "secret.txt").write_text(FILE_SECRET)
    (d / "secret.txt").chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def marker(outside):
    m = outside / f"marker-{secrets.token_hex(4)}"
    yield m
    assert not os.path.lexists(m), f"the sandbox let {m} be made"


@pytest.fixture(scope="module")
def listeners(outside):
    """Listeners' addresses, and ``heard()``: what reached any of them since the last call."""
    path = str(outside / "dgram.sock")
    made = [(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
            (socket.AF_UNIX, socket.SOCK_STREAM, f"\0sandbox-attack-{secrets.token_hex(4)}"),
            (socket.AF_UNIX, socket.SOCK_DGRAM, f"\0sandbox-attack-dg-{secrets.token_hex(4)}"),
            (socket.AF_UNIX, socket.SOCK_DGRAM, path)]
    socks = []
    for family, kind, address in made:
        socks.append(socket.socket(family, kind))
        socks[-1].bind(address)
        socks[-1].setblocking(False)
        if kind == socket.SOCK_STREAM:
            socks[-1].listen()
    os.chmod(path, 0o777)
    names = dict(port=socks[0].getsockname()[1], abstract=socks[1].getsockname(),
                 abstract_dgram=socks[2].getsockname(), dgram_path=path)

    def heard():
        got = []
        for s in socks:
            while True:
                try:
                    got.append(s.recv(100) if s.type == socket.SOCK_DGRAM
                               else s.accept()[0].close() or "a connection")
                except OSError:  # BlockingIOError: nothing (more) came
                    break
        return got

    yield names, heard
    for s in socks:
        s.close()


@pytest.fixture
def victim():
    """A process of the workers' own uid, holding VICTIM_SECRET in its memory (its $0)."""
    p = subprocess.Popen(["/bin/sh", "-c", "sleep 60; :", VICTIM_SECRET], start_new_session=True,
                         user=UID if os.geteuid() == 0 else None)
    while VICTIM_SECRET.encode() not in Path(f"/proc/{p.pid}/cmdline").read_bytes():
        time.sleep(0.01)
    yield p
    os.killpg(p.pid, signal.SIGKILL)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:  # a tracer (a broken sandbox's worker) holds its exit
        pass


def victim_state(pid):
    st, status = stat_fields(pid), Path(f"/proc/{pid}/status").read_text()
    return (st[0] in "RSD", st[16], os.sched_getaffinity(pid),  # running/sleeping, nice, cpus
            re.search(r"TracerPid:\s*(\d+)", status)[1], Path(f"/proc/{pid}/limits").read_text())


@pytest.fixture
def parent_signals():
    """Signals this process got (SIGUSR1, SIGIO: the attacks' only weapons against it)."""
    got = []
    old = {s: signal.signal(s, lambda n, f: got.append(n)) for s in (signal.SIGUSR1, signal.SIGIO)}
    yield got
    for s, h in old.items():
        signal.signal(s, h)


# ---------------------------------------------------------------- 1. files
WRITES = {
    "open": "open(marker, 'w').write('x')",
    "dir_fd of /": "d = os.open('/', os.O_RDONLY)\n"
                   "os.open(marker[1:], os.O_CREAT | os.O_WRONLY, dir_fd=d)",
    "chdir /": "os.chdir('/')\nopen(marker[1:], 'w')",
    "flipping __fspath__": "class Flip:\n    n = 0\n    def __fspath__(self):\n"
                           "        Flip.n += 1\n"
                           "        return 'inside' if Flip.n % 2 else marker\n"
                           "for _ in range(4): attempt('open', open, Flip(), 'w')",
    "hard link": "open('f', 'w').close()\nos.link('f', marker)",
    "rename": "open('f', 'w').close()\nos.rename('f', marker)",
    "symlink": "os.symlink(marker, 'lnk')\nopen('lnk', 'w')",
    "raw openat": "print(sys_(257, -100, marker.encode(), os.O_CREAT | os.O_WRONLY, 0o644))",
    "raw openat2": "how = (ctypes.c_uint64 * 3)(os.O_CREAT | os.O_WRONLY, 0o644, 0)\n"
                   "print(sys_(437, -100, marker.encode(), how, 24))",
    "O_TMPFILE + linkat": "fd = os.open('.', os.O_TMPFILE | os.O_WRONLY)\n"
                          "print(sys_(265, fd, b'', -100, marker.encode(), 0x1000))",
}
READS = {
    "open": "print(open(secret).read())",
    "dir_fd of /": "d = os.open('/', os.O_RDONLY)\n"
                   "print(os.read(os.open(secret[1:], os.O_RDONLY, dir_fd=d), 99))",
    "raw openat": "fd, e = sys_(257, -100, secret.encode(), 0)\n"
                  "b = ctypes.create_string_buffer(99)\nprint(libc.read(fd, b, 99), b.raw)",
    "/proc/self/root": "print(open('/proc/self/root' + secret).read())",
    "hard link in": "os.link(secret, 'l')\nprint(open('l').read())",
}
METADATA = {"chmod": "os.chmod(f, 0o777)", "utime": "os.utime(f, (0, 0))",
            "setxattr": "os.setxattr(f, 'user.pwned', b'1')", "truncate": "os.truncate(f, 0)"}


@pytest.mark.parametrize("how", WRITES)
def test_no_file_written_outside(repl, marker, outside, how):
    before = set(os.listdir(outside))
    attack(repl, WRITES[how], marker=marker)
    assert not os.path.lexists(marker) and set(os.listdir(outside)) == before


@pytest.mark.parametrize("how", READS)
def test_no_file_read_outside(repl, outside, how):
    assert FILE_SECRET not in attack(repl, READS[how], secret=outside / "secret.txt")


@pytest.mark.parametrize("where", ["purelib", "stdlib"])
def test_no_pth_file_planted(repl, where):
    target = Path(sysconfig.get_paths()[where]) / f"zz-sandbox-attack-{secrets.token_hex(4)}.pth"
    try:
        attack(repl, "open(target, 'w').write('# planted\\n')", target=target)
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


@pytest.mark.parametrize("how", METADATA)
def test_no_metadata_change_outside(repl, mode, outside, request, how):
    f = outside / f"owned-{how}"  # a file of the worker's uid, as all of a non-root parent's are
    f.write_text("keep")
    os.chown(f, UID, UID)
    f.chmod(0o600)
    look = lambda: (f.stat().st_mode, f.stat().st_mtime, f.stat().st_size, os.listxattr(f))
    before = look()
    hole(request, mode, how)
    attack(repl, METADATA[how], f=f)
    assert look() == before


# ---------------------------------------------------------------- 2. device nodes
NODES = {
    "char 1,1 (/dev/mem)": "os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 1))",
    "block root disk": "os.mknod(p, stat.S_IFBLK | 0o600, root_dev)",
    "raw mknodat": "print(sys_(259, -100, p.encode(), stat.S_IFBLK | 0o600, root_dev))",
    "fifo": "os.mkfifo(p)",
    "existing /dev/mem": "p = '/dev/mem'",
    "existing root disk": "p = root_disk",
}
READ_NODE = ("\ntry:\n    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)\n"
             "    print('READ', len(os.read(fd, 4096)))\nexcept OSError as e: print('READ -1', e)")


@pytest.mark.parametrize("where", ["work dir", "outside"])
@pytest.mark.parametrize("how", NODES)
def test_no_device_node_read(repl, outside, where, how):
    root_dev, before = os.stat("/").st_dev, set(os.listdir(outside))
    disks = [d for d in (f"/dev/{n}" for n in os.listdir("/dev"))
             if stat.S_ISBLK(os.lstat(d).st_mode) and os.lstat(d).st_rdev == root_dev]
    p = f"node-{secrets.token_hex(4)}"
    out = attack(repl, f"attempt('make', lambda: exec({NODES[how]!r}, globals()))" + READ_NODE,
                 p=p if where == "work dir" else outside / p, root_dev=root_dev,
                 root_disk=(disks + ["/dev/vda"])[0])
    assert all(int(n) <= 0 for n in re.findall(r"^READ (-?\d+)", out, re.M))  # no byte read
    assert set(os.listdir(outside)) == before


# ---------------------------------------------------------------- 3. processes
CHILD = "\nif r == 0: time.sleep(2); os._exit(0)\nprint(r)"  # a child would be seen, then leave
SPAWNS = {
    "os.fork": "r = os.fork()" + CHILD,
    "raw fork": "r, e = sys_(57)" + CHILD,
    "raw clone": "r, e = sys_(56, signal.SIGCHLD, 0, 0, 0, 0)" + CHILD,
    "os.posix_spawn": "os.posix_spawn('/usr/bin/touch', ['touch', marker], {})",
    "subprocess.run": "import subprocess\nsubprocess.run(['touch', marker])",
    "os.execv": "os.execv('/usr/bin/touch', ['touch', marker])",
    "_posixsubprocess renamed": "import importlib.machinery, importlib.util\n"
        "name = 'innocent._posixsubprocess'\n"
        "loader = importlib.machinery.ExtensionFileLoader(name, so)\n"
        "spec = importlib.util.spec_from_file_location(name, so, loader=loader)\n"
        "sys.modules['_posixsubprocess'] = importlib.util.module_from_spec(spec)\n"
        "import subprocess\nsubprocess.run(['touch', marker])",
    "libc system()": "print(libc.system(f'touch {marker}'.encode()))",
}


@pytest.mark.parametrize("how", SPAWNS)
def test_no_process_started(fresh, marker, how):
    import _posixsubprocess
    r = fresh()
    pid, work = pid_of(r), r.workdir.encode()
    attack(r, SPAWNS[how], marker=marker, so=_posixsubprocess.__file__)
    assert [p for p, parent, _ in procs() if parent == pid] == [] and not marker.exists()
    r.close()
    assert gone(pid)
    assert [p for p, _, cmd in procs() if bytes(marker) in cmd or work in cmd] == []


# ---------------------------------------------------------------- 4. a compiled extension
C_SOURCE = r"""
#include <stdlib.h>
#include <arpa/inet.h>
#include <sys/socket.h>
__attribute__((constructor)) static void attack(void) {
    system("touch %(marker)s");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(%(port)d),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    connect(s, (struct sockaddr *)&a, sizeof a);
}
void *PyInit_evil(void) { return 0; }
"""
LOADERS = {"ctypes.CDLL": "ctypes.CDLL('./' + name)",
           "importlib": "import importlib.util\nimportlib.util.module_from_spec("
                        "importlib.util.spec_from_file_location('evil', name))"}


@pytest.mark.parametrize("how", LOADERS)
def test_no_harm_from_a_compiled_extension(repl, tmp_path, marker, listeners, how):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is missing (apt-get install gcc): no extension to compile")
    names, heard = listeners
    (tmp_path / "evil.c").write_text(C_SOURCE % dict(marker=marker, port=names["port"]))
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", tmp_path / "evil.so", tmp_path / "evil.c"],
                   check=True)
    heard()
    attack(repl, "import base64\nopen(name, 'wb').write(base64.b64decode(blob))\n" + LOADERS[how],
           blob=base64.b64encode((tmp_path / "evil.so").read_bytes()).decode(),
           name=f"evil{secrets.token_hex(4)}.so")
    assert not marker.exists() and heard() == []


# ---------------------------------------------------------------- 5. network
def int80_connect(port):
    """i386 socket() + connect() to 127.0.0.1:port through int 0x80 (the other syscall table)."""
    sa = struct.pack("<HH4s8x", 2, socket.htons(port), bytes([127, 0, 0, 1]))
    return (b"\x53\xb8" + struct.pack("<I", 359) + b"\xbb\x02\0\0\0\xb9\x01\0\0\0\x31\xd2\xcd\x80"
            b"\x89\xc3\xb8" + struct.pack("<I", 362) + b"\x48\x8d\x0d\x09\0\0\0\xba\x10\0\0\0"
            b"\xcd\x80\x5b\xc3" + sa)


DGRAM = "a = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0]\n"
NET = {
    "create_connection": "socket.create_connection(('127.0.0.1', port), timeout=1)",
    "raw socket": "fd, e = sys_(41, 2, 1, 0)\nprint(fd, e, sys_(42, fd, inet(port), 16))",
    "abstract AF_UNIX": "socket.socket(socket.AF_UNIX).connect(abstract)",
    "urllib": "import urllib.request\n"
              "urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=1)",
    "x32 socket": "print(sys_(0x40000000 | 41, 2, 1, 0))",
    "int 0x80 socket": "libc.mmap.restype = ctypes.c_void_p\nlibc.mmap.argtypes = (ctypes.c_void_p,"
        " ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)\n"
        "page = libc.mmap(None, 4096, 7, 0x62, -1, 0)  # rwx, private anonymous, below 4 GiB\n"
        "ctypes.memmove(page, shellcode, len(shellcode))\n"
        "print(ctypes.CFUNCTYPE(ctypes.c_int)(page)())",
    "socketpair sendto abstract": DGRAM + "a.sendto(b'x', abstract_dgram)",
    "socketpair sendto path": DGRAM + "a.sendto(b'x', dgram_path)",
    "socketpair connect path": DGRAM + "a.connect(dgram_path)\na.send(b'x')",
}


@pytest.mark.parametrize("how", NET)
def test_no_connection_out(repl, mode, listeners, request, how):
    names, heard = listeners
    heard()
    hole(request, mode, how)
    attack(repl, NET[how], shellcode=int80_connect(names["port"]), **names)
    assert heard() == []


# ---------------------------------------------------------------- 6. signals and other processes
OWNED_PIPE = ("r, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETOWN, {})\n{}"  # SIGIO on I/O, close
              "fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)\n"
              "os.write(w, b'x')\nos.close(w)\nos.close(r)")
SIGNALS = {
    "os.kill": "attempt('victim', os.kill, victim, signal.SIGTERM)\n"
               "attempt('parent', os.kill, parent, signal.SIGUSR1)",
    "os.killpg": "os.killpg(victim, signal.SIGKILL)",
    "kill -1": "if os.getuid() == uid: print(sys_(62, -1, signal.SIGUSR1))  # all of the uid",
    "raw kill": "print(sys_(62, victim, 9), sys_(62, -victim, 9), sys_(62, parent, 10))",
    "tgkill": "print(sys_(234, victim, victim, 9), sys_(234, os.getpid(), victim, 9))",
    "rt_sigqueueinfo": "print(sys_(129, victim, 9, struct.pack('<iii116x', 9, 0, -1)))",
    "pidfd_send_signal": "fd, e = sys_(434, victim, 0)\nprint(fd, e, sys_(424, fd, 9, 0, 0))",
    "setpriority": "os.setpriority(os.PRIO_PROCESS, victim, 19)",
    "raw setpriority": "print(sys_(141, 0, victim, 19), sys_(141, 1, victim, 19), "
                       "sys_(141, 2, uid, 19))",  # PRIO_PROCESS, _PGRP, _USER
    "PRIO_USER 0": "if os.getuid() == uid: print(sys_(141, 2, 0, 19))  # who=0: my own uid",
    "sched_setaffinity": "os.sched_setaffinity(victim, {0})",
    "ptrace attach": "print(sys_(101, 16, victim, 0, 0))",
    "process_vm_readv": "print(read_other(victim, arg_start, 256))",
    "F_SETOWN SIGIO": OWNED_PIPE.format("victim", ""),
    "F_SETOWN parent SIGUSR1": OWNED_PIPE.format("parent", "fcntl.fcntl(r, 10, 10)  # F_SETSIG\n"),
}


@pytest.mark.parametrize("how", SIGNALS)
def test_no_harm_to_other_processes(repl, mode, victim, parent_signals, request, how):
    before = victim_state(victim.pid)
    hole(request, mode, how)
    out = attack(repl, SIGNALS[how], victim=victim.pid, parent=os.getpid(), uid=UID,
                 arg_start=int(stat_fields(victim.pid)[45]))
    time.sleep(0.05)  # signals are delivered at once; a little slack for the scheduler
    assert VICTIM_SECRET not in out and parent_signals == []
    assert victim.poll() is None and victim_state(victim.pid) == before


# ---------------------------------------------------------------- 7. /proc and other REPLs
SNOOP = """
for p in [f'/proc/{pid}/environ', f'/proc/{pid}/cwd/secret.txt', f'{a_work}/secret.txt',
          f'/proc/{pid}/root{a_work}/secret.txt', f'/proc/{parent}/environ',
          f'/proc/{os.getppid()}/environ', '/proc/self/environ', '/proc/1/environ']:
    attempt(p, lambda: open(p, 'rb').read())
print(dict(os.environ))
def found(data): return data[data.find(b'a-secret-'):][:40] if b'a-secret-' in data else len(data)
def mem():
    with open(f'/proc/{pid}/mem', 'rb') as f:
        return [found((f.seek(lo), f.read(hi - lo))[1]) for lo, hi in regions]
attempt('mem', mem)
attempt('process_vm_readv', lambda: [(r, found(data)) for lo, hi in regions
                                     for r, data in [read_other(pid, lo, hi - lo)]])
"""


def test_no_reading_another_repl_or_the_parent(fresh):
    a, b = fresh(), fresh()
    a_secret = "a-secret-" + secrets.token_hex(8)
    assert a.run(f"s = {a_secret!r}\nopen('secret.txt', 'w').write(s)") == f"{len(a_secret)}\n"
    pid, regions = pid_of(a), []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():  # where A's data lies
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if line.split()[1].startswith("rw") and hi - lo <= 16 * 2**20:
            regions.append((lo, hi))
    out = attack(b, SNOOP, pid=pid, a_work=a.workdir, parent=os.getpid(), regions=regions)
    assert a_secret not in out and pid_of(a) == pid


SHM = """
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(key, 4096, 0)
addr = libc.shmat(shmid, None, 0)
print('SHM', shmid, addr if addr in (None, 2**64 - 1) else ctypes.string_at(addr, 64))
"""


def test_no_reading_host_shared_memory(repl):
    """A SysV segment of this process (mode 0666, a secret in it): the worker's IPC namespace
    (bwrap, kernel) hides it, and seccomp refuses shmget/shmat where there is none."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key, secret = secrets.randbelow(2**30) + 1, ("shm-secret-" + secrets.token_hex(8)).encode()
    shmid = libc.shmget(key, 4096, 0o1000 | 0o666)  # IPC_CREAT
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    try:
        addr = libc.shmat(shmid, None, 0)
        ctypes.memmove(addr, secret, len(secret))
        assert secret.decode() not in attack(repl, SHM, key=key)
        libc.shmdt(ctypes.c_void_p(addr))
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID


# ---------------------------------------------------------------- 8. the reply protocol
STEAL = ("f = sys._getframe()\nwhile 'rid' not in f.f_locals: f = f.f_back\n"
         "nonce, out = f.f_locals['rid'], sys.modules['__main__'].PROTO_OUT\n"
         "forged = lambda n: json.dumps({'id': n, 'output': 'FORGED'}).encode() + b'\\n'\n")
PROTOCOL = {
    "stolen nonce": "out.write(forged(nonce))\ntime.sleep(0.2)",
    "guessed nonce": "out.write(forged('0' * 32))",
    "two replies": "out.write(forged(nonce) + forged(nonce))",
    "partial line": "out.write(b'{\"id\": \"')\ntime.sleep(0.2)",
    "pipes found by fstat": "for fd in range(3, 64):\n    try:\n"
        "        if stat.S_ISFIFO(os.fstat(fd).st_mode): os.write(fd, forged(nonce) * 2)\n"
        "    except OSError: pass",
    "closed protocol fds": "os.close(out.fileno())\n"
                           "os.close(sys.modules['__main__'].PROTO_IN.fileno())",
}
SERVES = ("out.write(forged(nonce))\nfor _ in range(3):\n"
          "    out.write(forged(json.loads(sys.modules['__main__'].PROTO_IN.readline())['id']))")


@pytest.mark.parametrize("how", PROTOCOL)
def test_no_forged_reply_to_a_later_call(fresh, mode, request, how):
    hole(request, mode, how)
    r = fresh()
    attack(r, STEAL + PROTOCOL[how])  # this call may return anything: that is just printing
    later = [r.run("1 + 1") for _ in range(3)]
    assert not any("FORGED" in o for o in later) and "2\n" in later


def test_a_session_that_answers_for_itself_is_cured_by_reset(fresh):
    """Code that owns its interpreter can keep answering later calls itself (reading each
    request, nonce and all, from the pipe), as it could by patching ``print``: no harm outside,
    and no protocol can tell. ``reset()`` ends it: the next worker is a fresh one."""
    r = fresh()
    attack(r, STEAL + SERVES)
    assert r.run("1 + 1") == "FORGED"  # the code, not the interpreter, answered
    r.reset()
    assert r.run("1 + 1") == "2\n" and r.run("1 + 1") == "2\n"


def test_no_thread_outlives_a_call(repl):
    """A thread started through the re-imported ``_thread`` would run between calls (forging
    replies, waiting for the next request); RLIMIT_NPROC=0 for the worker's uid refuses it."""
    pid = pid_of(repl)
    attack(repl, STEAL + "import importlib, _thread\n_thread = importlib.reload(_thread)\n"
                 "attempt('thread', _thread.start_new_thread,\n"
                 "        lambda: (time.sleep(0.3), out.write(forged(nonce))), ())")
    time.sleep(0.5)
    assert len(os.listdir(f"/proc/{pid}/task")) == 1
    assert [repl.run("1 + 1") for _ in range(2)] == ["2\n", "2\n"] and pid_of(repl) == pid


# ---------------------------------------------------------------- 9. bounded time, no raising
BOUNDED = {
    "busy loop": "while True: pass",
    "libc sleep": "libc.sleep(100)",
    "time.sleep": "time.sleep(100)",
    "read protocol input": "sys.modules['__main__'].PROTO_IN.read(1)",
    "20 MB of code": "x = 1  # " + "a" * 20 * 2**20,
    "lone surrogates": "print('\ud800 \udfff')",
    "NUL bytes": "print(1)\0print(2)",
    "10 MB output": "print('x' * 10**7)",
    "os._exit": "os._exit(3)",
    "segfault": "import faulthandler\nfaulthandler._sigsegv()",
    "SIGSTOP itself": "os.kill(os.getpid(), signal.SIGSTOP)",
    "ignores SIGTERM": "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(100)",
}


@pytest.mark.parametrize("how", BOUNDED)
def test_run_and_close_are_bounded(fresh, how):
    r = fresh(timeout=1)
    pids = [pid_of(r), r.proc.pid]
    t = time.monotonic()
    out = attack(r, BOUNDED[how])
    assert isinstance(out, str) and time.monotonic() - t < r.config.timeout + 5
    assert r.run("1 + 1") == "2\n"  # the session recovers
    pids += [r.worker_pid, r.proc.pid]
    t = time.monotonic()
    r.close()
    assert time.monotonic() - t < 5 and all(gone(p) for p in pids)


# ---------------------------------------------------------------- 10. resources
def test_disk_is_capped(repl):
    out = attack(repl, "try:\n    for i in range(64): open(f'fill{i}', 'wb').write(b'x' * 2**20)\n"
                       "except OSError as e: print(e)\n"
                       "fills = [f for f in os.listdir('.') if f.startswith('fill')]\n"
                       "print('TOTAL', sum(os.path.getsize(f) for f in fills))\n"
                       "for f in fills: os.remove(f)")
    assert int(re.search(r"TOTAL (\d+)", out)[1]) <= (LIMITS["disk_mb"] + 1) * 2**20


def test_memory_is_capped(repl):
    out = attack(repl, "try:\n    b = bytearray(2 * 2**30)\n    print('ALLOCATED')\n"
                       "except MemoryError: print('MemoryError')")
    status = Path(f"/proc/{pid_of(repl)}/status").read_text()
    assert "MemoryError" in out and "ALLOCATED" not in out
    assert int(re.search(r"VmPeak:\s*(\d+) kB", status)[1]) <= LIMITS["memory_mb"] * 1024


def test_limits_cannot_be_raised_or_imposed(repl, victim):
    wpid = pid_of(repl)
    limits = lambda: [Path(f"/proc/{p}/limits").read_text()
                      for p in (wpid, victim.pid, os.getpid())]
    before = limits()
    attack(repl, "attempt('setrlimit', resource.setrlimit, resource.RLIMIT_AS, (-1, -1))\n"
                 "inf = (ctypes.c_uint64 * 2)(2**64 - 1, 2**64 - 1)\n"
                 "one = (ctypes.c_uint64 * 2)(1, 1)\n"
                 "print(sys_(302, 0, 9, inf, 0))  # RLIMIT_AS of this process\n"
                 "print(sys_(302, victim, 7, one, 0), sys_(302, victim, 9, inf, 0))  # NOFILE, AS\n"
                 "print(sys_(302, parent, 15, one, 0))  # RLIMIT_RTTIME: harmless, easy to see",
           victim=victim.pid, parent=os.getpid())
    assert pid_of(repl) == wpid and limits() == before


# ---------------------------------------------------------------- 11. privilege
def test_no_privilege_gained(repl):
    out = attack(repl, "attempt('setuid', os.setuid, 0)\nprint('RC', sys_(105, 0)[0])\n"
                       "print('RC', sys_(272, 0x10000000)[0])  # unshare(CLONE_NEWUSER)\n"
                       "print('UID', os.getuid())\n"
                       "print('RC', libc.mount(b'none', b'.', b'tmpfs', 0, None))\n"
                       "print('RC', sys_(165, b'none', b'.', b'tmpfs', 0, 0)[0])\n"
                       "print('UID', os.getuid(), os.geteuid())")
    status = Path(f"/proc/{pid_of(repl)}/status").read_text()
    assert set(re.findall(r"^RC (-?\d+)", out, re.M)) == {"-1"}
    assert "0" not in re.findall(r"UID (\d+)", out) and re.search(r"Uid:\s+(\d+)", status)[1] != "0"
    assert re.search(r"CapEff:\s+(\w+)", status)[1] == "0" * 16


# ---------------------------------------------------------------- 12. cleanup of hostile trees
BUILD = """
import os, sys
top, keep = sys.argv[1:]
os.mkdir(top); os.chdir(top)
os.mkfifo('fifo'); os.symlink(keep, 'link'); os.symlink(os.path.dirname(keep), 'dirlink')
os.makedirs('.rm-1/.rm-2'); open('.rm-1/f', 'w').close()
os.mkdir('locked'); open('locked/f', 'w').close(); os.chmod('locked', 0)
for _ in range(3000): os.mkdir('d'); os.chdir('d')
os.mkfifo('fifo'); os.mkdir('locked'); os.chmod('locked', 0)
"""


def test_remove_tree_deletes_a_hostile_tree(tmp_path):
    keep = tmp_path / "keep" / "outside.txt"
    keep.parent.mkdir()
    keep.write_text("keep")
    top = tmp_path / "work"
    subprocess.run([sys.executable, "-c", BUILD, top, keep], check=True, timeout=60)
    assert remove_tree(str(top)) and not os.path.lexists(top) and keep.read_text() == "keep"


# ---------------------------------------------------------------- the defaults compose
DISARM = ("import os.path\nhere = os.getcwd()\n"  # the hook resolves paths at call time
          "os.path.realpath = lambda p, *a, **k: here + '/x'\n")


def test_a_disarmed_audit_hook_changes_nothing(outside, marker):
    """With the hook on (the defaults), code first fools it: every path now looks inside the
    work dir. Then it writes and reads outside: Landlock refuses (``kernel``), or the path is
    not even there (``bwrap``); the kernel layers never relied on the hook."""
    with PythonREPL() as r:
        outs = [r.run(DISARM + code) for code in (
            f"open({str(marker)!r}, 'w').write('x')",
            f"print(open({str(outside / 'secret.txt')!r}).read())")]
    assert not any("SandboxViolation" in o for o in outs), outs  # fooled: the kernel said no
    assert all(re.search(r"(PermissionError|FileNotFoundError): \[Errno", o) for o in outs), outs
    assert not marker.exists() and FILE_SECRET not in outs[1]
def test_default_settings_hold(outside, marker, listeners, victim, parent_signals):
    names, heard = listeners
    heard()
    before = victim_state(victim.pid)
    r = PythonREPL()
    try:
        outs = [r.run(code) for code in (
            f"open({str(marker)!r}, 'w')",
            f"import subprocess; subprocess.run(['touch', {str(marker)!r}])",
            f"import socket; socket.create_connection(('127.0.0.1', {names['port']}), timeout=1)",
            f"import os; os.kill({victim.pid}, 9); os.kill({os.getpid()}, 10)",
            f"import ctypes; ctypes.CDLL(None).kill({victim.pid}, 9)",
            "import os; print(os.environ)", f"print(open({str(outside / 'secret.txt')!r}).read())")]
    finally:
        r.close()
    assert all(isinstance(o, str) and ENV_SECRET not in o and FILE_SECRET not in o for o in outs)
    assert not marker.exists() and heard() == [] and parent_signals == []
    assert victim.poll() is None and victim_state(victim.pid) == before
