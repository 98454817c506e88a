"""week11 tests run single-process here and launch ``torchrun`` (2 CPU processes, gloo) for
the distributed ones; ``torchrun_py`` is the launcher every such test uses."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launch:
    """A process tree started for a test (torchrun and its workers), output to files, that
    can always be stopped: the workers carry a marker in their environment, so a timeout
    kills every one of them, even those torchrun started in sessions of their own."""

    def __init__(self, cmd: list, env: dict | None = None):
        self.marker = uuid.uuid4().hex
        self.files = [tempfile.TemporaryFile("w+") for _ in range(2)]
        full = {**os.environ, "OMP_NUM_THREADS": "1", "NANOCHAT_DIST_TIMEOUT_S": "120",
                **(env or {}), "NANOCHAT_TEST_LAUNCH": self.marker}
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.files[0], stderr=self.files[1], text=True,
                                     env=full, start_new_session=True)

    def _kill_tree(self) -> None:
        self.proc.send_signal(signal.SIGTERM)           # torchrun stops its workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        needle = f"NANOCHAT_TEST_LAUNCH={self.marker}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass

    def wait(self, timeout: float = 240) -> subprocess.CompletedProcess:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_tree()
            raise AssertionError(f"{self.cmd[-3:]} did not finish in {timeout} s; stopped it:"
                                 f"\n{self._read(1)[-4000:]}") from None
        return subprocess.CompletedProcess(self.cmd, self.proc.returncode, self._read(0),
                                           self._read(1))

    def _read(self, i: int) -> str:
        self.files[i].seek(0)
        return self.files[i].read()


def torchrun_cmd(script, *args, nproc: int = 2, extra: tuple = ()) -> list:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={free_port()}", *extra,
            str(script), *map(str, args)]


@pytest.fixture
def launch():
    """``launch(cmd, env=None) -> Launch``; ``.wait(timeout)`` gives the CompletedProcess."""
    return Launch


@pytest.fixture
def torchrun_py():
    """``torchrun_py(script, *args, nproc=2, env=None, timeout=240, check=True)``: run a Python
    file under ``python -m torch.distributed.run`` on 127.0.0.1 with ``nproc`` CPU processes;
    returns the CompletedProcess (stdout and stderr as text). A run past ``timeout`` is
    stopped, workers and all. The workers see the learner's exercises
    (``shared.exercises.apply_env_swaps``); a stub they ran is re-raised here as the
    NotImplementedError it was."""

    def run(script, *args, nproc: int = 2, env: dict | None = None, timeout: float = 240,
            check: bool = True, extra: tuple = ()):
        out = Launch(torchrun_cmd(script, *args, nproc=nproc, extra=extra), env).wait(timeout)
        stub = re.search(r"NotImplementedError: (not implemented yet[^\n]*)", out.stderr)
        if check and out.returncode != 0 and stub:   # a learner's stub ran in a worker
            raise NotImplementedError(stub.group(1))
        if check and out.returncode != 0:
            raise AssertionError(f"torchrun {script} failed ({out.returncode}):\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
        return out

    return run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A week02 data folder (index.json + uint16 shards) of 60 Python-docs documents, tokenized
    with a 300-token BPE fitted on them: real text, small enough for CPU tests."""
    from shared import load_corpus
    from week02_bpe import BPETokenizer, prepare

    docs = [d.text for d in load_corpus("pydocs").documents[:60]]
    tok = BPETokenizer.train("\n".join(docs)[:200_000], vocab_size=300)
    out = tmp_path_factory.mktemp("data")
    prepare(docs, tok, out, num_workers=1, val_fraction=0.1, progress=False)
    return out


# ----------------------------------------------------------------------------- the reference run


def _one_process(data_dir, steps, accum, optimizer, tmp_path, dtype="fp32"):
    """Losses, first-step gradients and final parameters of the same run in one process."""
    from week02_bpe import TokenLoader
    from week03_training import TrainConfig, Trainer
    from week04_modern_arch_tools import Llama, LlamaConfig

    cfg = TrainConfig(steps=steps, batch_size=4, block_size=16, grad_accum=accum,
                      optimizer=optimizer, lr=1e-2, muon_lr=0.02, warmup_steps=1, eval_every=0,
                      progress=False, save_final=False, write_metrics=False, grad_clip=1.0,
                      dtype=dtype)

    loader = TokenLoader(data_dir, 4, 16, seed=3)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=loader.vocab_size, block_size=16, n_layer=2, n_head=4,
                              n_kv_head=2, n_embd=32))
    t = Trainer(model, loader, cfg, run_dir=tmp_path / "one")
    first = t.train_step()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    infos = [first] + [t.train_step() for _ in range(steps - 1)]
    return {"losses": [i["loss"] for i in infos], "grad_norms": [i["grad_norm"] for i in infos],
            "grads": grads, "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def _assert_same_run(ours, ref, rtol, atol):
    assert ours["losses"] == pytest.approx(ref["losses"], rel=rtol)
    assert ours["grad_norms"] == pytest.approx(ref["grad_norms"], rel=rtol * 10)
    assert ours["grads"].keys() == ref["grads"].keys()
    for name, g in ref["grads"].items():
        torch.testing.assert_close(ours["grads"][name], g, rtol=rtol, atol=atol, msg=name)
    # after a few steps the parameters: Adam divides by sqrt(v), so an entry whose gradient is
    # all rounding (|g| ~ 1e-9) moves by up to lr either way; the bulk agrees far tighter
    for name, p in ref["params"].items():
        diff = (ours["params"][name] - p).abs()
        assert diff.max() < 1e-3 and diff.mean() < 1e-5, (name, diff.max(), diff.mean())


@pytest.fixture
def one_process():
    """``one_process(data_dir, steps, grad_accum, optimizer, tmp_path)``: week03's Trainer in this
    process on the global batch (4 rows) of ``dist_scripts/train_equal.py``'s 2 x 2 rows: the
    step losses, grad norms, first-step gradients and final parameters."""
    return _one_process


@pytest.fixture
def assert_same_run():
    """``assert_same_run(ours, ref, rtol, atol)``: losses, grad norms and first-step gradients
    equal to ``rtol``/``atol``; the parameters after a few Adam steps to what rounding allows."""
    return _assert_same_run
