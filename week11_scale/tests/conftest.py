"""week11 tests run single-process here and launch ``torchrun`` (2 CPU processes, gloo) for
the distributed ones; ``torchrun_py`` is the launcher every such test uses."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def torchrun_py():
    """``torchrun_py(script, *args, nproc=2, env=None, timeout=240, check=True)``: run a Python
    file under ``python -m torch.distributed.run`` on 127.0.0.1 with ``nproc`` CPU processes;
    returns the CompletedProcess (stdout and stderr captured as text)."""

    def run(script, *args, nproc: int = 2, env: dict | None = None, timeout: float = 240,
            check: bool = True, extra: tuple = ()):
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
               *extra, str(script), *map(str, args)]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
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
