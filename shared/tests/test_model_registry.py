"""Models recorded by import path: ``model_spec`` / ``save_model`` / ``load_model`` rebuild a
model of any class from its checkpoint alone, and say clearly when they cannot."""

from dataclasses import asdict, dataclass

import pytest
import torch

from shared import (
    CheckpointError,
    build_model,
    import_path,
    load_model,
    model_spec,
    read_meta,
    resolve,
    save_checkpoint,
    save_model,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@dataclass
class ToyConfig:
    vocab: int = 11
    width: int = 4

    def __post_init__(self):
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")


class Toy(torch.nn.Module):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.emb = torch.nn.Embedding(config.vocab, config.width)
        self.head = torch.nn.Linear(config.width, config.vocab)

    def forward(self, idx):
        return self.head(self.emb(idx))


def test_save_and_load_model_rebuild_the_class_and_its_weights(tmp_path):
    torch.manual_seed(0)
    model = Toy(ToyConfig(vocab=13, width=6))
    path = save_model(tmp_path / "toy.safetensors", model, {"note": "kept"})
    meta = read_meta(path)
    assert meta["note"] == "kept"
    assert meta["model"] == {"class": f"{__name__}:Toy", "config_class": f"{__name__}:ToyConfig",
                             "config": {"vocab": 13, "width": 6},
                             "n_params": sum(p.numel() for p in model.parameters())}
    again = load_model(path)
    assert type(again) is Toy and again.config == model.config and not again.training
    idx = torch.tensor([[1, 2, 12]])
    assert torch.equal(again(idx), model(idx))


def test_training_checkpoints_with_a_model_entry_load_too(tmp_path):
    model = Toy(ToyConfig())
    path = save_checkpoint(tmp_path / "step.safetensors",
                           {"model": model.state_dict(), "step": 3}, {"model": model_spec(model)})
    assert torch.equal(load_model(path).head.weight, model.head.weight)


def test_import_paths_round_trip_and_fail_clearly():
    assert resolve(import_path(Toy)) is Toy
    assert resolve("shared.checkpoint:save_model") is save_model

    def local():
        class Inner(torch.nn.Module):
            pass
        return Inner

    with pytest.raises(CheckpointError, match="defined inside a function"):
        import_path(local())
    with pytest.raises(CheckpointError, match="not an import path"):
        resolve("Toy")
    with pytest.raises(CheckpointError, match="cannot import 'no_such_pkg.mod'"):
        resolve("no_such_pkg.mod:Thing")
    with pytest.raises(CheckpointError, match="has no 'Gone'"):
        resolve(f"{__name__}:Gone")


def test_specs_that_do_not_fit_are_clear_errors(tmp_path):
    spec = model_spec(Toy(ToyConfig()))
    with pytest.raises(CheckpointError, match="no model description"):
        build_model({}, source="x")
    with pytest.raises(CheckpointError, match="config does not fit"):
        build_model({**spec, "config": {"vocab": 11, "depth": 3}})
    with pytest.raises(CheckpointError, match="config does not fit"):
        build_model({**spec, "config": {"vocab": 11, "width": -1}})  # the config's own check
    with pytest.raises(CheckpointError, match="without an import path"):
        build_model({"class": "Toy", **asdict(ToyConfig())})
    model = Toy(ToyConfig())
    path = save_model(tmp_path / "m.safetensors", model,
                      {"model": {**spec, "config": {"vocab": 11, "width": 5}}})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(path)
    bare = save_checkpoint(tmp_path / "bare.safetensors", model.state_dict())
    with pytest.raises(CheckpointError, match="no model description"):
        load_model(bare)
    with pytest.raises(CheckpointError, match="has no .config"):
        model_spec(torch.nn.Linear(2, 2))
