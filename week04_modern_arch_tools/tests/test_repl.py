"""The Python REPL sandbox: a REPL that works, and real escape attempts that are contained.

Every attack is bounded even if the sandbox failed: one fork (whose child exits at
once), one allocation of 1.5 GiB, a signal the test itself catches instead of SIGKILL,
short timeouts. Each test checks that the tool answered with an error string, that
the attack had no effect outside, and that this (the parent) process is still here.
"""

import os
import signal
import socket
import threading

import pytest

from shared import Tool
from week04_modern_arch_tools import PythonREPL


@pytest.fixture
def repl():
    r = PythonREPL(timeout=10.0, memory_mb=512, file_size_mb=1, max_output=2000)
    yield r
    r.close()


def blocked(out: str) -> bool:
    return "blocked by the sandbox" in out or out.startswith("Error")


def test_a_working_repl_with_state(repl):
    assert isinstance(repl, Tool) and repl.name == "python"
    assert repl.run("x = 6\ny = 7\nx * y") == "42\n"
    assert repl.run("print('hi'); x + 1") == "hi\n7\n"
    assert repl.run("def f(n): return n * 2\nf(21)") == "42\n"
    assert repl.run("import math, json, collections, re, random\nmath.factorial(5)") == "120\n"
    assert repl.run("None") == ""
    out = repl.run("1 / 0")
    assert "ZeroDivisionError: division by zero" in out and "_sandbox_worker" not in out
    assert "SyntaxError" in repl.run("def (")
    assert repl.run("x") == "6\n"  # errors keep the state


def test_files_inside_the_sandbox_work(repl):
    assert repl.run("open('notes.txt', 'w').write('abc')") == "3\n"
    assert repl.run("open('notes.txt').read()") == "'abc'\n"
    assert repl.run("import os; sorted(os.listdir('.'))") == "['notes.txt']\n"
    assert repl.run("import tempfile; tempfile.mkstemp()[1].startswith(os.getcwd())") == "True\n"


def test_reading_outside_is_blocked(repl, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    out = repl.run("print(open('/etc/passwd').read())")
    assert blocked(out) and "root:" not in out
    out = repl.run(f"open({str(secret)!r}).read()")
    assert blocked(out) and "TOP-SECRET" not in out
    assert blocked(repl.run("import os; os.listdir('/')"))
    assert blocked(repl.run("open('../../etc/hostname').read()"))
    assert blocked(repl.run("import pathlib; pathlib.Path('/proc/self/environ').read_bytes()"))


def test_writing_outside_is_blocked(repl, tmp_path):
    target = tmp_path / "pwned.txt"
    assert blocked(repl.run(f"open({str(target)!r}, 'w').write('x')"))
    assert blocked(repl.run(f"import os; os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)"))
    assert blocked(repl.run(f"import pathlib; pathlib.Path({str(target)!r}).write_text('x')"))
    assert blocked(repl.run(f"import os; os.symlink({str(target)!r}, 'link')"))
    assert blocked(repl.run(f"import os; os.remove({str(tmp_path)!r})"))
    assert blocked(repl.run(f"import shutil; shutil.rmtree({str(tmp_path)!r})"))
    assert not target.exists() and tmp_path.exists()


def test_network_is_blocked(repl):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        assert blocked(repl.run("import socket; socket.socket()"))
        out = repl.run(f"import socket; socket.create_connection(('127.0.0.1', {port}))")
        assert blocked(out)
        assert blocked(repl.run("import urllib.request; urllib.request.urlopen('http://1.1.1.1')"))
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    finally:
        server.close()


@pytest.mark.parametrize("code", [
    "import subprocess; subprocess.run(['true'])",
    "import os; os.system('touch pwned')",
    "import os; os.popen('touch pwned').read()",
    "import os; os.execv('/bin/true', ['true'])",
    "import os; os.posix_spawn('/bin/true', ['true'], {})",
    "import os; os.spawnv(os.P_WAIT, '/bin/true', ['true'])",
    "import pty; pty.spawn('true')",
    "import multiprocessing; multiprocessing.Process(target=print).start()",
])
def test_processes_are_blocked(repl, code):
    assert blocked(repl.run(code))
    assert repl.run("import os; os.path.exists('pwned')") == "False\n"


def test_fork_is_blocked_even_as_root(repl):
    """One fork attempt; were it to succeed, the child exits at once (no bomb)."""
    out = repl.run("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\npid")
    assert blocked(out)
    assert blocked(repl.run("import posix\npid = posix.fork()\nif pid == 0:\n    posix._exit(0)"))
    assert blocked(repl.run("import threading; threading.Thread(target=print).start()"))


def test_signalling_the_parent_is_blocked(repl):
    """The attack is os.kill(os.getppid(), SIGKILL); here with SIGUSR1, which this test
    catches, so a broken sandbox fails the test instead of killing the test run."""
    got = threading.Event()
    old = signal.signal(signal.SIGUSR1, lambda *a: got.set())
    try:
        me = os.getpid()
        assert blocked(repl.run(f"import os, signal; os.kill({me}, signal.SIGUSR1)"))
        assert blocked(repl.run(f"import os, signal; os.killpg(os.getpgid({me}), signal.SIGUSR1)"))
        assert blocked(repl.run("import signal; signal.pidfd_send_signal(0, signal.SIGUSR1)"))
        assert blocked(repl.run("import os; os.kill(os.getppid(), 0)"))
        assert not got.wait(0.3)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert os.getpid() == me


def test_ctypes_escapes_are_blocked(repl):
    assert blocked(repl.run("import ctypes; ctypes.CDLL(None).system(b'touch pwned')"))
    assert blocked(repl.run("import _ctypes"))
    assert blocked(repl.run("import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))"))
    assert blocked(repl.run("import sys; sys.modules['__main__']._check.__code__ = (lambda: 0).__code__"))
    assert blocked(repl.run("import gc; gc.get_objects()"))
    assert repl.run("import os; os.path.exists('pwned')") == "False\n"


def test_memory_bomb_is_an_error(repl):
    out = repl.run("b = bytearray(1536 * 2**20)")  # 1.5 GiB > the 512 MiB limit
    assert "MemoryError" in out or out.startswith("Error")
    assert repl.run("2 + 2") == "4\n"


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
