"""The command line in real subprocesses: exact resume after SIGKILL/SIGTERM, bad input.

Every run uses the same small settings (week01 GPT "tiny" preset, 12 steps,
a checkpoint every 4, dropout on so the RNG states matter). The reference is
one uninterrupted run; the others are killed and resumed, and must end with
bitwise-identical weights and the same per-step losses.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from shared import load_checkpoint, read_metrics

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ARGS = ["--model", "tiny", "--steps", "12", "--batch-size", "4", "--block-size", "32",
        "--ckpt-every", "4", "--eval-every", "4", "--eval-batches", "2", "--dropout", "0.1",
        "--warmup-steps", "3", "--no-progress"]

# the CLI's main() with shared.checkpoint.save_file patched: the Nth write truncates its
# file half way and the process SIGKILLs itself, as a crash in the middle of a write would
HALF_WRITE = """
import os, signal, sys
import shared.checkpoint as ck
real, calls = ck.save_file, [0]
def half(tensors, path, metadata=None):
    calls[0] += 1
    real(tensors, path, metadata=metadata)
    if calls[0] == int(os.environ["DIE_ON_WRITE"]):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
ck.save_file = half
from week03_training.train import main
sys.exit(main(sys.argv[1:]))
"""


def _env(tmp_path, **extra):
    env = {**os.environ, "NANOCHAT_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0"}
    env.pop("NANOCHAT_KILL_AT_STEP", None)
    env.update(extra)
    return env


def cli(args, tmp_path, code=None, **env):
    cmd = [sys.executable, "-c", code, *args] if code else \
        [sys.executable, "-m", "week03_training.train", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=300)


def _final(run_dir):
    """(model tensors, loss history, [(step, loss, val_loss)] from metrics.jsonl)."""
    ckpts = sorted((run_dir / "checkpoints").glob("step_*.safetensors"))
    state, meta = load_checkpoint(ckpts[-1])
    assert meta["step"] == 12
    # resume drops the rows logged after its checkpoint: each step appears once
    logged = [(row["step"], row["loss"], row.get("val_loss")) for row in read_metrics(run_dir)]
    return state["model"], state["history"].tolist(), logged


def _assert_same(run_a, run_b):
    model_a, hist_a, log_a = _final(run_a)
    model_b, hist_b, log_b = _final(run_b)
    assert model_a.keys() == model_b.keys()
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
    assert hist_a == hist_b and len(hist_a) == 12
    assert log_a == log_b and [r[0] for r in log_a] == list(range(1, 13))


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    r = cli([*ARGS, "--data", str(data_dir), "--out", str(tmp / "run")], tmp)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 12
    return tmp / "run"


# ----------------------------------------------------------------------------- exact resume


def test_sigkill_then_resume_is_exact(reference, data_dir, tmp_path):
    """SIGKILL right after the step-8 checkpoint (no handler can run), then --resume."""
    out = tmp_path / "run"
    r = cli([*ARGS, "--data", str(data_dir), "--out", str(out)], tmp_path,
            NANOCHAT_KILL_AT_STEP="8")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert max(row["step"] for row in read_metrics(out)) == 8
    r = cli(["--out", str(out), "--resume", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "step 8" in r.stderr
    _assert_same(reference, out)


def test_sigterm_from_parent_saves_and_resumes_exactly(reference, data_dir, tmp_path):
    """The parent sends SIGTERM once the first checkpoint exists: the child finishes its
    step, checkpoints, exits 143; resuming from wherever it stopped gives the same run."""
    out = tmp_path / "run"
    args = [*ARGS, "--data", str(data_dir), "--out", str(out)]
    args[args.index("--steps") + 1] = "12"
    proc = subprocess.Popen([sys.executable, "-m", "week03_training.train", *args], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = out / "checkpoints" / "step_0000004.safetensors"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast)")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    r = cli(["--out", str(out), "--resume", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    _assert_same(reference, out)


def test_kill_during_checkpoint_write_keeps_previous(reference, data_dir, tmp_path):
    """The step-8 write is cut half way by SIGKILL: step 4 stays loadable and resumes exactly."""
    out = tmp_path / "run"
    r = cli([*ARGS, "--data", str(data_dir), "--out", str(out)], tmp_path, code=HALF_WRITE,
            DIE_ON_WRITE="2")
    assert r.returncode == -signal.SIGKILL, r.stderr
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "step_0000004.safetensors" in names and "step_0000008.safetensors" not in names
    assert any(n.startswith(".step_0000008") for n in names)        # the torn temp file
    r = cli(["--out", str(out), "--resume", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "step_0000004" in r.stderr
    _assert_same(reference, out)


# ----------------------------------------------------------------------------- bad input


BAD_INPUT = [
    (["--model", "huge", "--data", "pydocs"], "unknown preset 'huge'; valid: tiny, 20m, gpt2"),
    (["--steps", "-5", "--data", "pydocs"], "argument --steps: -5 is not allowed"),
    (["--lr", "abc", "--data", "pydocs"], "argument --lr: 'abc' is not a number"),
    (["--data", "/no/such/folder"], "--data '/no/such/folder': no such folder"),
    ([], "--data is required"),
    (["--resume", "--data", "pydocs"], "--resume without a file needs --out"),
    (["--resume", "missing.safetensors"], "missing.safetensors does not exist"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_is_one_clear_line(args, message, tmp_path, monkeypatch, capsys):
    """main() in this process (a subprocess per case would only add torch's import time)."""
    from week03_training.train import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    try:
        code = main(args)
    except SystemExit as e:                    # argparse's own exit for malformed flags
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_fresh_run_refuses_a_folder_with_checkpoints(reference, data_dir, capsys):
    from week03_training.train import main
    assert main([*ARGS, "--data", str(data_dir), "--out", str(reference)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    r = cli(["--model", "tiny", "--data", "/no/such/folder"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --data '/no/such/folder': no such folder")
    assert "Traceback" not in r.stderr


def test_corrupt_checkpoint_on_resume_is_a_clear_error(reference, tmp_path, capsys):
    ckpt = sorted((reference / "checkpoints").glob("step_*.safetensors"))[-1]
    bad = tmp_path / "checkpoints" / "step_0000012.safetensors"
    bad.parent.mkdir()
    data = ckpt.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    from week03_training.train import main
    assert main(["--resume", str(bad), "--no-progress"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    from week03_training.train import main, make_parser
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--model" in out and "--kill" not in out
    for action in make_parser()._actions:
        assert action.help, action.option_strings


# ----------------------------------------------------------------------------- any model class

SMALL = ["--steps", "3", "--batch-size", "2", "--block-size", "16", "--eval-every", "0",
         "--warmup-steps", "0", "--no-progress"]


RELU_GPT = '''
import torch.nn as nn
from week01_transformer import GPT, MLP, Block

class ReluMLP(MLP):
    def __init__(self, config, layer_idx=0):
        super().__init__(config, layer_idx)
        self.act = nn.ReLU()

class ReluBlock(Block):
    mlp_cls = ReluMLP

class ReluGPT(GPT):
    """A model class of its own (the way a later week writes one): week01's GPT, ReLU MLPs."""
    block_cls = ReluBlock
'''


def test_trains_a_model_class_by_import_path_and_load_model_rebuilds_it(data_dir, tmp_path,
                                                                        monkeypatch, capsys):
    """--model relugpt:ReluGPT --preset char-tiny: the class's config preset at the
    tokenizer's vocab; shared.load_model rebuilds the checkpoint as that class with its
    weights; --resume rebuilds it from the checkpoint's import path and continues."""
    from shared import load_model
    from week03_training.train import main
    (tmp_path / "relugpt.py").write_text(RELU_GPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "relu"
    assert main(["--model", "relugpt:ReluGPT", "--preset", "char-tiny", *SMALL,
                 "--data", str(data_dir), "--out", str(out)]) == 0
    ckpt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["checkpoint"]
    model = load_model(ckpt)
    assert type(model).__name__ == "ReluGPT" and model.config.n_layer == 4
    assert all(isinstance(b.mlp.act, torch.nn.ReLU) for b in model.blocks)
    state, _ = load_checkpoint(ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    assert main(["--out", str(out), "--resume", "--steps", "5", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 5


BAG = '''
from __future__ import annotations
from dataclasses import dataclass, replace
import torch

@dataclass
class BagConfig:
    vocab_size: int = 64
    block_size: int = 16
    n_embd: int = 8

    @classmethod
    def preset(cls, name: str, **overrides) -> BagConfig:
        if name != "tiny":
            raise ValueError(f"unknown preset {name!r}; valid: tiny")
        return replace(cls(), **overrides)

class Bag(torch.nn.Module):
    """No config_class attribute: the CLI finds BagConfig from the annotation."""
    def __init__(self, config: BagConfig):
        super().__init__()
        self.config = config
        self.emb = torch.nn.Embedding(config.vocab_size, config.n_embd)
        self.head = torch.nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx):
        return self.head(self.emb(idx))
'''


def test_config_class_from_the_annotation_or_the_flag(data_dir, tmp_path, monkeypatch, capsys):
    from shared import load_model
    from week03_training.train import main
    (tmp_path / "bagmodel.py").write_text(BAG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    for i, extra in enumerate(([], ["--config-class", "bagmodel:BagConfig"])):
        assert main(["--model", "bagmodel:Bag", *extra, *SMALL, "--data", str(data_dir),
                     "--out", str(tmp_path / f"bag{i}")]) == 0
        ckpt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["checkpoint"]
        assert type(load_model(ckpt)).__name__ == "Bag"


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_module:Model"], "cannot import 'no_such_module'"),
    (["--model", "shared:Tokenizer"], "is not a torch.nn.Module class"),
    (["--model", "torch.nn:Linear"], "no config class with a preset() table"),
    (["--model", "week01_transformer:GPT", "--preset", "huge"], "--preset 'huge' for GPT"),
    (["--model", "tiny", "--preset", "tiny"], "--preset is for --model package.module:Class"),
])
def test_bad_model_classes_are_one_clear_line(args, message, data_dir, tmp_path, monkeypatch,
                                              capsys):
    from week03_training.train import main
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    assert main([*args, *SMALL, "--data", str(data_dir), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
