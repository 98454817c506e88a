"""The sandbox under a parent that is not root: the path most users take, run here as uid 4242.

CI runs as root, and this repo's interpreter may sit where another uid cannot read it
(pyenv under /root), so the test builds a bare copy other uids can read: the system Python,
a venv without pip holding the pure-Python ``landlock`` and ``pyseccomp``, and the four
sandbox files (not the week04 package, which imports torch). A parent running as uid 4242
then opens a ``PythonREPL`` in each mode, with the audit hook off, and attacks what such a
worker shares its uid with: a file of that uid outside, the parent itself (signals,
priority, ptrace, its ``/proc``), the network and the disk. Harm is judged by the parent,
outside the sandbox: the file's bytes and mode, its own nice value and signals received,
a listener's connections, what the worker managed to write.
"""

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

import week04_modern_arch_tools.tools as tools
from week04_modern_arch_tools.tools.isolation import support

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

UID = 4242
SYSTEM_PYTHON = "/usr/bin/python3"
FILES = ("repl.py", "isolation.py", "_confine.py", "_sandbox_worker.py")

PARENT = r"""
import json, os, signal, socket, sys
from week04_modern_arch_tools.tools.repl import PythonREPL
owned, modes = sys.argv[1], sys.argv[2:]
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append("SIGUSR1"))
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(); server.setblocking(False)
ATTACK = '''
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def t(f):
    try: f()
    except Exception: pass
t(lambda: open(OWNED, 'a').write('pwned'))
t(lambda: os.chmod(OWNED, 0o777))
t(lambda: os.utime(OWNED, (0, 0)))
t(lambda: os.kill(PARENT, 10))
libc.syscall(62, PARENT, 10)
libc.syscall(62, -1, 10)
t(lambda: os.setpriority(os.PRIO_PROCESS, PARENT, 19))
libc.syscall(141, 2, 0, 19)
libc.syscall(101, 16, PARENT, 0, 0)
t(lambda: socket.create_connection(("127.0.0.1", PORT), timeout=1))
for p in ('/proc/%d/environ' % PARENT, OWNED):
    t(lambda: print('READ', open(p).read()))
total = 0
try:
    for i in range(40):
        open('fill%d' % i, 'wb').write(b'0' * 2**20); total += 2**20
except OSError:
    pass
print('TOTAL', total, 'UID', os.getuid())
'''
report = {}
for mode in modes:
    code = ATTACK.replace("OWNED", repr(owned)).replace("PARENT", str(os.getpid()))
    with PythonREPL(isolation=mode, audit_hook=False, disk_mb=8, file_size_mb=2) as r:
        out = r.run(code.replace("PORT", str(server.getsockname()[1])))
    try:
        server.accept(); heard = True
    except BlockingIOError:
        heard = False
    st = os.stat(owned)
    report[mode] = dict(out=out, bytes=open(owned).read(), mode=st.st_mode & 0o777,
                        mtime=st.st_mtime, nice=os.getpriority(os.PRIO_PROCESS, 0),
                        signals=list(got), heard=heard)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A copy of the sandbox that uid 4242 can run: system Python + a venv + four files."""
    if os.geteuid() != 0:
        pytest.skip("this test switches to uid 4242 and needs root to do so")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"no system Python at {SYSTEM_PYTHON} (apt-get install python3)")
    if not support().kernel:
        pytest.skip("no kernel isolation here: " + "; ".join(support().why))
    top = Path(tempfile.mkdtemp(prefix="sandbox-nonroot-", dir="/tmp"))
    try:
        pkg = top / "pkg" / "week04_modern_arch_tools" / "tools"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").touch()
        (pkg / "__init__.py").touch()
        for name in FILES:
            shutil.copy(Path(tools.__file__).with_name(name), pkg / name)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", top / "venv"], check=True)
        site = subprocess.run([top / "venv/bin/python", "-c", "import sysconfig; print("
                               "sysconfig.get_paths()['purelib'])"], check=True,
                              capture_output=True, text=True).stdout.strip()
        ours = Path(sysconfig.get_paths()["purelib"])
        shutil.copytree(ours / "landlock", Path(site) / "landlock")
        shutil.copy(ours / "pyseccomp.py", site)
        Path(site, "bare.pth").write_text(str(top / "pkg") + "\n")
        (top / "parent.py").write_text(PARENT)
        (top / "owned.txt").write_text("secret")
        os.chown(top / "owned.txt", UID, UID)
        os.chmod(top / "owned.txt", 0o600)
        for p in [top, *top.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o555 if p.is_dir() else p.stat().st_mode | 0o444)
        os.chmod(top / "owned.txt", 0o600)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_non_root_parent_is_protected_from_its_own_uid(bare):
    modes = ["kernel"] + (["bwrap"] if support().bwrap else [])
    owned = bare / "owned.txt"
    before, nice = os.stat(owned), os.getpriority(os.PRIO_PROCESS, 0)  # the child inherits it
    run = subprocess.run([bare / "venv/bin/python", "-I", bare / "parent.py", owned, *modes],
                         user=UID, group=UID, extra_groups=[], cwd=bare, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(bare)})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(modes)
    for mode, r in report.items():
        assert f"UID {UID}" in r["out"], (mode, r["out"])  # the worker ran, as the parent's uid
        assert "READ" not in r["out"], (mode, r["out"])  # neither file nor /proc was readable
        assert r["bytes"] == "secret" and r["mode"] == 0o600 and r["mtime"] == before.st_mtime
        assert r["nice"] == nice and r["signals"] == [] and not r["heard"], (mode, r)
        total = int(r["out"].split("TOTAL ")[1].split()[0])
        assert total <= 9 * 2**20, (mode, total)  # disk_mb=8: the tmpfs held it
