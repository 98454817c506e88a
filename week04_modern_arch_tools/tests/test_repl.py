"""The Python REPL sandbox with its default layers: a REPL that works, the friendly refusals.

Here the audit hook is on (the default), so each refusal comes back as its own
``SandboxViolation`` line; ``test_sandbox_attacks.py`` turns the hook off and judges the
kernel layers by harm alone. Every attack is bounded even if the sandbox failed: one fork (whose child exits at
once), one allocation of 1.5 GiB, a signal the test itself catches instead of SIGKILL,
short timeouts. Each test checks that the sandbox itself refused the attempt (its
``SandboxViolation`` / ``SandboxImportViolation`` line naming the operation, read with
``refusals``; a crash or any other error does not count), that the attack had no effect
seen from outside (no file, no connection, no child process, no thread, the limit still
in place, the same worker process), and that this (the parent) process is still here.
"""

import os
import signal
import socket
import threading

import pytest

from shared import Tool
from week04_modern_arch_tools import PythonREPL
from week04_modern_arch_tools.tools.isolation import SandboxUnavailable, support
from week04_modern_arch_tools.tools.repl import refusals

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(
             support().bwrap is None, reason="bubblewrap missing: apt-get install bubblewrap")),
         pytest.param("kernel", marks=pytest.mark.skipif(
             not support().kernel, reason="no Landlock/seccomp: " + "; ".join(support().why)))]


@pytest.fixture(params=MODES)
def repl_mode(request):
    return request.param


@pytest.fixture
def repl():
    r = PythonREPL(timeout=10.0, memory_mb=512, file_size_mb=1, max_output=2000)
    assert r.run("1") == "1\n"  # start the worker, so tests can watch its process
    yield r
    r.close()


def refused(out: str, what: str) -> bool:
    """Whether the sandbox itself refused an operation whose description starts with ``what``."""
    return any(r.startswith(what) for r in refusals(out))


def same_worker(repl, pid: int) -> bool:
    """The worker neither died nor was replaced (an exec would replace it, a crash kill it)."""
    return repl.alive and repl.worker_pid == pid and repl.restarts == 0


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (zombies included), read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_refusals_reads_only_the_sandboxs_own_lines():
    out = ("Traceback (most recent call last):\n  File \"<repl>\", line 1, in <module>\n"
           "SandboxViolation: blocked by the sandbox: os.system\n")
    assert refusals(out) == ["os.system"]
    assert refusals("SandboxImportViolation: blocked by the sandbox: import pty\n") == ["import pty"]
    for other in ("Error: timed out after 1 s", "PermissionError: [Errno 13] Permission denied",
                  "MemoryError", "print: blocked by the sandbox: os.system"):
        assert refusals(other) == []


def test_each_mode_runs_the_same_repl(repl_mode):
    """bubblewrap and the kernel layers alone give the same interpreter to well-behaved code."""
    with PythonREPL(isolation=repl_mode, timeout=10.0) as r:
        assert r.isolation == repl_mode
        assert r.run("import json, math, re, fractions, decimal, datetime\nmath.factorial(6)") == "720\n"
        assert r.run("open('n.txt', 'w').write('ok'); open('n.txt').read()") == "'ok'\n"
        assert r.run("import os; os.getuid() != 0, os.environ['HOME'] == os.getcwd()") == \
            "(True, True)\n"


def test_no_kernel_isolation_means_no_repl(monkeypatch):
    """Without Landlock and seccomp the REPL refuses to start and says what to install;
    ``isolation="none"`` is the explicit, documented way round it."""
    from week04_modern_arch_tools.tools import isolation
    bare = isolation.Support(bwrap=None, landlock_abi=0, seccomp=False, root=os.geteuid() == 0,
                             why=("the Python package 'landlock' (pip install landlock)",
                                  "the Python package 'pyseccomp' (pip install pyseccomp)"))
    monkeypatch.setattr(isolation, "support", lambda: bare)
    with pytest.raises(SandboxUnavailable, match="landlock.*pyseccomp.*isolation='none'"):
        PythonREPL()
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        PythonREPL(isolation="bwrap")
    with pytest.raises(ValueError, match="isolation must be one of"):
        PythonREPL(isolation="docker")
    with PythonREPL(isolation="none") as r:
        assert r.isolation == "none" and r.run("6 * 7") == "42\n"


def test_a_worker_that_cannot_confine_itself_says_why(tmp_path):
    """The worker reports a failed confinement step on the pipe and exits before reading
    code; the parent's error quotes it."""
    import json
    import subprocess
    import sys

    from week04_modern_arch_tools.tools.repl import WORKER
    cfg = dict(mode="kernel", workdir=str(tmp_path / "missing"), uid=123456, nonce="n",
               disk_bytes=2**20, cpu_seconds=5, memory_mb=256, file_size_mb=1, max_open_files=32,
               max_output=100, audit_hook=True)
    out = subprocess.run([sys.executable, "-I", str(WORKER), json.dumps(cfg)], input=b"",
                         capture_output=True, timeout=30, cwd=tmp_path)
    reply = json.loads(out.stdout.splitlines()[0])
    assert out.returncode == 1 and "missing" in reply["failed"], reply


def test_a_working_repl_with_state(repl):
    assert isinstance(repl, Tool) and repl.name == "python"
    assert repl.run("x = 6\ny = 7\nx * y") == "42\n"
    assert repl.run("print('hi'); x + 1") == "hi\n7\n"
    assert repl.run("def f(n): return n * 2\nf(21)") == "42\n"
    assert repl.run("import math, json, collections, re, random\nmath.factorial(5)") == "120\n"
    assert repl.run("None") == ""
    out = repl.run("1 / 0")
    assert "ZeroDivisionError: division by zero" in out and "_sandbox_worker" not in out
    assert refusals(out) == []
    assert "SyntaxError" in repl.run("def (")
    assert repl.run("x") == "6\n"  # errors keep the state


def test_files_inside_the_sandbox_work(repl):
    assert repl.run("open('notes.txt', 'w').write('abc')") == "3\n"
    assert repl.run("open('notes.txt').read()") == "'abc'\n"
    assert repl.run("import os; sorted(os.listdir('.'))") == "['notes.txt']\n"
    assert repl.run("import tempfile; tempfile.mkstemp()[1].startswith(os.getcwd())") == "True\n"


def test_metadata_is_fixed_and_says_how_to_copy(repl):
    """seccomp refuses chmod/chown/utime everywhere (Landlock cannot hold them outside); the
    hook names it and the way round, and touch() and copyfile() still work."""
    assert repl.run("open('a.txt', 'w').write('abc')") == "3\n"
    out = repl.run("import shutil; shutil.copy('a.txt', 'b.txt')")
    assert refused(out, "os.chmod (modes, owners and times stay") and "copyfile" in out
    assert refused(repl.run("import os; os.utime('a.txt', (0, 0))"), "os.utime")
    assert repl.run("import shutil; shutil.copyfile('a.txt', 'c.txt'); open('c.txt').read()") \
        == "'abc'\n"
    assert repl.run("import pathlib; pathlib.Path('d.txt').touch(); pathlib.Path('a.txt').touch()"
                    "; sorted(os.listdir('.'))") == "['a.txt', 'b.txt', 'c.txt', 'd.txt']\n"


def test_reading_outside_is_blocked(repl, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    out = repl.run("print(open('/etc/passwd').read())")
    assert refused(out, "reading '/etc/passwd'") and "root:" not in out
    out = repl.run(f"open({str(secret)!r}).read()")
    assert refused(out, f"reading {str(secret)!r}") and "TOP-SECRET" not in out
    out = repl.run("import os; os.listdir('/')")
    assert refused(out, "os.listdir outside") and "proc" not in out
    assert refused(repl.run("open('../../etc/hostname').read()"), "reading '../../etc/hostname'")
    out = repl.run("import pathlib; pathlib.Path('/proc/self/environ').read_bytes()")
    assert refused(out, "reading '/proc/self/environ'") and "PATH=" not in out


def test_writing_outside_is_blocked(repl, tmp_path):
    target = tmp_path / "pwned.txt"
    pid = repl.worker_pid
    assert refused(repl.run(f"open({str(target)!r}, 'w').write('x')"), f"writing {str(target)!r}")
    assert refused(repl.run(f"import os; os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)"),
                   f"writing {str(target)!r}")
    assert refused(repl.run(f"import pathlib; pathlib.Path({str(target)!r}).write_text('x')"),
                   f"writing {str(target)!r}")
    assert refused(repl.run(f"import os; os.symlink({str(target)!r}, 'link')"), "os.symlink")
    assert refused(repl.run(f"import os; os.remove({str(tmp_path)!r})"), "os.remove outside")
    assert refused(repl.run(f"import shutil; shutil.rmtree({str(tmp_path)!r})"),
                   "shutil.rmtree outside")
    assert not target.exists() and tmp_path.is_dir()
    assert not os.path.lexists(os.path.join(repl.workdir, "link"))
    assert same_worker(repl, pid)


def test_network_is_blocked(repl):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        assert refused(repl.run("import socket; socket.socket()"), "socket.__new__")
        out = repl.run(f"import socket; socket.create_connection(('127.0.0.1', {port}))")
        assert refused(out, "socket.")
        out = repl.run("import urllib.request; urllib.request.urlopen('http://1.1.1.1')")
        assert refused(out, "socket.")  # wrapped in a URLError, still the sandbox's line
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    finally:
        server.close()


@pytest.mark.parametrize("code,what", [
    ("import subprocess; subprocess.run(['touch', {pwned!r}])", "import _posixsubprocess"),
    ("import os; os.system('touch {pwned}')", "os.system"),
    ("import os; os.popen('touch {pwned}').read()", "import _posixsubprocess"),
    ("import os; os.execv('/usr/bin/touch', ['touch', {pwned!r}])", "os.exec"),
    ("import os; os.posix_spawn('/usr/bin/touch', ['touch', {pwned!r}], {{}})", "os.posix_spawn"),
    ("import os; os.spawnv(os.P_WAIT, '/usr/bin/touch', ['touch', {pwned!r}])", "os.fork"),
    ("import pty; pty.spawn(['touch', {pwned!r}])", "import pty"),
    ("import multiprocessing; multiprocessing.Process(target=print).start()",
     "import _posixsubprocess"),
])
def test_processes_are_blocked(repl, tmp_path, code, what):
    """Each attempt would run ``touch`` outside the sandbox: had a process started, the file
    would exist (a child is not under the audit hook)."""
    pwned = str(tmp_path / "pwned")
    pid = repl.worker_pid
    assert refused(repl.run(code.format(pwned=pwned)), what)
    assert not os.path.exists(pwned)
    assert children(pid) == [] and same_worker(repl, pid)


def test_fork_is_blocked_even_as_root(repl):
    """One fork attempt; were it to succeed, the child exits at once (no bomb) and stays a
    zombie child of the worker, which the /proc scan would see."""
    pid = repl.worker_pid
    out = repl.run("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\npid")
    assert refused(out, "os.fork")
    out = repl.run("import posix\npid = posix.fork()\nif pid == 0:\n    posix._exit(0)")
    assert refused(out, "posix.fork")
    assert refused(repl.run("import threading; threading.Thread(target=print).start()"),
                   "starting a thread")
    assert children(pid) == [] and same_worker(repl, pid)
    assert len(os.listdir(f"/proc/{pid}/task")) == 1  # no thread started either
    assert repl.run("import threading; threading.active_count()") == "1\n"


def test_signalling_the_parent_is_blocked(repl):
    """The attack is os.kill(os.getppid(), SIGKILL); here with SIGUSR1, which this test
    catches, so a broken sandbox fails the test instead of killing the test run."""
    got = threading.Event()
    old = signal.signal(signal.SIGUSR1, lambda *a: got.set())
    try:
        me = os.getpid()
        assert refused(repl.run(f"import os, signal; os.kill({me}, signal.SIGUSR1)"), "os.kill")
        assert refused(repl.run(f"import os, signal; os.killpg({os.getpgid(me)}, signal.SIGUSR1)"),
                       "os.killpg")
        assert refused(repl.run("import signal; signal.pidfd_send_signal(0, signal.SIGUSR1)"),
                       "signal.pidfd_send_signal")
        assert refused(repl.run("import os; os.kill(os.getppid(), 0)"), "os.kill")
        assert not got.wait(0.3)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert os.getpid() == me


def address_space_limit(pid: int) -> str:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max address space"):
            return line.split()[3]  # the soft limit, in bytes
    raise AssertionError("no address-space line in /proc/<pid>/limits")


def test_ctypes_escapes_are_blocked(repl, tmp_path):
    pid = repl.worker_pid
    pwned = str(tmp_path / "pwned")
    assert refused(repl.run(f"import ctypes; ctypes.CDLL(None).system(b'touch {pwned}')"),
                   "import ctypes")
    assert refused(repl.run("import _ctypes"), "import _ctypes")
    assert not os.path.exists(pwned)
    assert address_space_limit(pid) == str(512 * 2**20)
    out = repl.run("import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))")
    assert refused(out, "resource.setrlimit")
    assert address_space_limit(pid) == str(512 * 2**20)  # the limit is still in place
    out = repl.run("import sys; sys.modules['__main__']._check.__code__ = (lambda: 0).__code__")
    assert refused(out, "setting __code__ of a sandbox function")
    # the hook still works after the attempt to rewrite it
    assert refused(repl.run("open('/etc/passwd').read()"), "reading '/etc/passwd'")
    out = repl.run("import gc; len(gc.get_objects())")
    assert refused(out, "gc.get_objects")
    assert same_worker(repl, pid)


def test_memory_bomb_is_an_error(repl):
    """RLIMIT_AS, not the audit hook: the allocation fails inside the worker, which lives on."""
    pid = repl.worker_pid
    assert repl.run("kept = 41") == ""
    out = repl.run("b = bytearray(1536 * 2**20)")  # 1.5 GiB > the 512 MiB limit
    assert out.endswith("MemoryError\n") and refusals(out) == []
    assert repl.run("kept + 1") == "42\n" and same_worker(repl, pid)


def test_infinite_loop_times_out_and_the_worker_is_replaced():
    with PythonREPL(timeout=1.0) as r:
        assert r.run("x = 5") == ""
        out = r.run("while True:\n    pass")
        assert out.startswith("Error: timed out") and "state lost" in out
        assert r.restarts == 1
        assert "NameError" in r.run("x")  # a fresh interpreter
        assert r.run("1 + 1") == "2\n"


def test_huge_output_is_truncated(repl):
    out = repl.run("print('y' * 10**6)")
    assert out.startswith("y" * 100) and len(out) < 2100 and "truncated" in out
    with PythonREPL(timeout=1.0, max_output=500) as r:
        out = r.run("while True:\n    print('spam')")
        assert out.startswith("Error: timed out")
    out = repl.run("open('big.bin', 'wb').write(b'0' * (4 * 2**20))")
    assert "File too large" in out  # RLIMIT_FSIZE is 1 MiB here


def test_crash_and_exit_are_survived(repl):
    out = repl.run("import os; os._exit(3)")
    assert out.startswith("Error: the interpreter exited with status 3")
    assert repl.run("import sys; sys.exit(2)") == "SystemExit: 2\n"
    out = repl.run("import faulthandler; faulthandler._sigsegv()")  # a hard crash of the worker
    assert out.startswith("Error: the interpreter crashed")
    assert repl.run("'still' + ' here'") == "'still here'\n"


def test_environment_secrets_are_not_inherited(repl, monkeypatch):
    monkeypatch.setenv("NANOCHAT_TEST_SECRET", "hunter2")
    repl.reset()
    out = repl.run("import os; sorted(os.environ)")
    assert "NANOCHAT_TEST_SECRET" not in out and "hunter2" not in out
    assert repl.run("import os; os.environ['HOME'] == os.getcwd()") == "True\n"


def test_non_string_input_is_an_error(repl):
    assert repl.run(123).startswith("Error")
