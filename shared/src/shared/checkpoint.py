"""Checkpoint IO: safetensors tensors + JSON metadata in one file, written atomically.

``save_checkpoint(path, state, meta)`` stores any nested structure of dicts,
lists, tuples, tensors, numbers, strings and NumPy arrays (a model's state
dict, an optimizer's, RNG states, a step counter...) as one ``.safetensors``
file. The tensors go in the safetensors body; the shape of the structure and
your ``meta`` dict go in its JSON header, so any safetensors reader can open
the weights and ``read_meta`` reads the metadata without loading tensors.

The write is atomic: a temp file in the same folder, ``fsync``, ``os.replace``,
then an ``fsync`` of the folder. A run killed mid-write leaves the previous
checkpoint intact. Loading a truncated, corrupt or mismatched file raises
``CheckpointError`` naming the file and the problem.

Models are recorded by import path: ``save_model`` writes ``model_spec(model)``
(the model's and its config's ``module:qualname`` and the config) into the
meta, and ``load_model(path)`` rebuilds any model of any week from it.

``write_json_atomic`` and ``fsync_path`` are the same atomic-write steps for the JSON
files and folders other weeks keep (manifests, fits, week11's sharded checkpoint folders).

Left out: sharded multi-file checkpoints and distributed (FSDP) state, which
week11 adds on top of this format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "nanochat-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit what loads it."""


# ---------------------------------------------------------------- packing


def _pack(obj: Any, path: str, tensors: dict[str, torch.Tensor], seen: dict) -> Any:
    """Turn ``obj`` into a JSON skeleton; tensors move into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        ident = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())) if t.numel() else None
        if ident is not None and ident in seen:  # tied weights: store once
            return {"__tensor__": seen[ident]}
        key = path or "root"
        tensors[key] = t.contiguous().clone() if _overlaps(t, tensors) else t.contiguous()
        if ident is not None:
            seen[ident] = key
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint key {path}/{k!r}: only str or int keys can be saved")
            items.append([k, _pack(v, f"{path}/{k}" if path else str(k), tensors, seen)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        packed = [_pack(v, f"{path}/{i}" if path else str(i), tensors, seen) for i, v in enumerate(obj)]
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": packed}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    raise TypeError(f"checkpoint value at {path or 'root'!r} has type {type(obj).__name__}, which cannot "
                    "be saved; valid: tensors, ndarrays, dict, list, tuple, int, float, str, bool, None")


def _overlaps(t: torch.Tensor, tensors: dict[str, torch.Tensor]) -> bool:
    """True when ``t`` shares storage with a tensor already stored (safetensors forbids that)."""
    if t.numel() == 0:
        return False
    ptr = t.untyped_storage().data_ptr()
    return any(o.numel() and o.untyped_storage().data_ptr() == ptr for o in tensors.values())


def _unpack(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__dict__" in node:
            return {k: _unpack(v, tensors) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_unpack(v, tensors) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_unpack(v, tensors) for v in node["__tuple__"])
        if "__ndarray__" in node:
            return np.array(node["data"], dtype=np.dtype(node["__ndarray__"])).reshape(node["shape"])
        if "__dtype__" in node:
            return getattr(torch, node["__dtype__"])
    return node


# ---------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike, state: Any, meta: dict | None = None) -> Path:
    """Write ``state`` (+ ``meta``) to ``path`` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, "", tensors, {})
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "tree": json.dumps(tree),
        "meta": json.dumps(meta or {}, default=str),
    }
    _remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=header)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files that killed writers of ``path`` left behind (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # alive (or not ours to signal): leave it


def fsync_path(path: str | os.PathLike) -> None:
    """``fsync`` a file or a folder (a folder: so a rename inside it survives a crash);
    a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_fsync_dir = fsync_path


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """``obj`` as JSON at ``path``, atomically: a temp file in the same folder, fsync,
    ``os.replace``, fsync the folder. A failure (say, a value JSON cannot hold) leaves the
    previous file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=indent, default=str) + "\n"   # fails before any write
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_path(path.parent)
    return path


def _header(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"checkpoint {path} is truncated ({size} bytes): not a safetensors file")
            n = int.from_bytes(raw, "little")
            if n <= 0 or n > size - 8:
                raise CheckpointError(f"checkpoint {path} is truncated or corrupt: header says {n} bytes, "
                                      f"file has {size}")
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: unreadable header ({e})") from None
    return header


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict of a checkpoint, without loading its tensors."""
    path = Path(path)
    md = _header(path).get("__metadata__") or {}
    return json.loads(md.get("meta", "{}"))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    expect: dict | None = None) -> tuple[Any, dict]:
    """Load ``(state, meta)`` from ``path``.

    ``expect`` is a dict of meta entries that must match (for example
    ``{"kind": "gpt", "n_layer": 12}``); a difference raises ``CheckpointError``.
    A plain safetensors file (no nanochat header) loads as a flat dict.
    """
    path = Path(path)
    header = _header(path)
    md = header.get("__metadata__") or {}
    if md.get("format", FORMAT) != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {md.get('format')!r}, expected {FORMAT!r}")
    if "version" in md and int(md["version"]) > VERSION:
        raise CheckpointError(f"checkpoint {path} is version {md['version']}; this code reads up to "
                              f"version {VERSION}: update the code")
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {e}") from None
    meta = json.loads(md.get("meta", "{}"))
    state = _unpack(json.loads(md["tree"]), tensors) if "tree" in md else tensors
    for key, want in (expect or {}).items():
        got = meta.get(key, "<missing>")
        if got != want:
            raise CheckpointError(f"checkpoint {path} does not match: meta[{key!r}] is {got!r}, "
                                  f"expected {want!r}")
    return state, meta


def check_state_dict(module: torch.nn.Module, state: dict, source: str = "state dict") -> None:
    """Raise ``CheckpointError`` listing missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append(f"shape mismatch {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))


# ---------------------------------------------------------------- models by import path


def import_path(obj) -> str:
    """``"package.module:QualName"`` of a class or function, the form ``resolve`` reads."""
    qual = getattr(obj, "__qualname__", None)
    mod = getattr(obj, "__module__", None)
    if not qual or not mod or "<locals>" in qual:
        raise CheckpointError(f"{obj!r} has no import path (it is defined inside a function); "
                              "define it at module level so a checkpoint can name it")
    return f"{mod}:{qual}"


def resolve(path: str):
    """The object an ``import_path`` names (the module is imported if it is not yet)."""
    import importlib
    import sys

    if not isinstance(path, str) or path.count(":") != 1:
        raise CheckpointError(f"{path!r} is not an import path; expected 'package.module:Name'")
    mod_name, qual = path.split(":")
    module = sys.modules.get(mod_name)
    if module is None:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise CheckpointError(f"cannot import {mod_name!r} for {path!r} ({e}); install the "
                                  "package that defines it") from None
    obj = module
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CheckpointError(f"{mod_name!r} has no {qual!r} (named by {path!r}): the code "
                                  "changed since the checkpoint was written")
    return obj


# checkpoints written before models were recorded by import path name a bare class
_LEGACY_CLASSES = {"Llama": "week04_modern_arch_tools:Llama", "GPT": "week01_transformer:GPT"}


def config_dict(config) -> dict:
    """A JSON-able dict of a model's config (``to_dict()`` or a dataclass's fields)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if hasattr(config, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise CheckpointError(f"the model's config is a {type(config).__name__}: give it a "
                          "dataclass or a to_dict() so a checkpoint can record it")


def model_spec(model: torch.nn.Module) -> dict:
    """What rebuilds ``model``: its class and config class by import path, and its config.

    ``{"class": "week04_modern_arch_tools.model:Llama", "config_class": "...:LlamaConfig",
    "config": {...}, "n_params": N}``; ``build_model`` reads it back.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise CheckpointError(f"{type(model).__name__} has no .config: a model that "
                              "shared.load_model rebuilds is constructed as cls(config)")
    return {"class": import_path(type(model)), "config_class": import_path(type(config)),
            "config": config_dict(config),
            "n_params": sum(p.numel() for p in model.parameters())}


def build_model(spec: dict, source: str = "checkpoint") -> torch.nn.Module:
    """A fresh model (random weights) from a ``model_spec`` dict: ``cls(config_cls(**config))``.

    Also reads the older form ``{"class": "Llama" | "GPT", **config fields}``.
    """
    if not isinstance(spec, dict) or "class" not in spec:
        raise CheckpointError(f"{source} has no model description in its meta (expected "
                              "meta['model'] from shared.model_spec: {'class': 'module:Name', "
                              "'config_class': ..., 'config': {...}}); it was not written by "
                              "shared.save_model or week03's Trainer")
    if "config" in spec:
        cls, cfg = resolve(spec["class"]), dict(spec["config"])
        cfg_cls = resolve(spec["config_class"]) if "config_class" in spec else cls.config_class
    else:  # legacy: a bare class name and the config's fields beside it
        name = spec["class"]
        if name not in _LEGACY_CLASSES:
            raise CheckpointError(f"{source} names a model class {name!r} without an import path")
        cls = resolve(_LEGACY_CLASSES[name])
        cfg_cls = cls.config_class
        cfg = {k: v for k, v in spec.items() if k not in ("class", "n_params")}
    try:
        config = cfg_cls.from_dict(cfg) if hasattr(cfg_cls, "from_dict") else cfg_cls(**cfg)
        return cls(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: the recorded {cls.__name__} config does not fit this "
                              f"code ({e})") from None


def save_model(path: str | os.PathLike, module: torch.nn.Module, meta: dict | None = None) -> Path:
    """Save a module's state dict (tied weights stored once) and, when the module has a
    ``config``, its ``model_spec`` as ``meta["model"]`` so ``load_model(path)`` rebuilds it."""
    meta = dict(meta or {})
    if "model" not in meta and getattr(module, "config", None) is not None:
        meta["model"] = model_spec(module)
    return save_checkpoint(path, module.state_dict(), meta)


def model_weights(state, source: str) -> dict:
    """The model's state dict inside a checkpoint: the whole state (``save_model``) or its
    ``"model"`` entry (week03's training checkpoints)."""
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{source} holds no model state dict (top-level keys: {keys})")
    return weights


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"
               ) -> torch.nn.Module:
    """Rebuild the model a checkpoint holds, from any week: class and config from its meta
    (``model_spec``), then the weights, strictly. Works for ``save_model`` files and for
    week03's training checkpoints. The model comes back in eval mode."""
    state, meta = load_checkpoint(path, map_location="cpu")
    source = f"checkpoint {path}"
    model = build_model(meta.get("model"), source=source)
    weights = model_weights(state, source)
    check_state_dict(model, weights, source=source)
    model.load_state_dict(weights)
    return model.to(map_location).eval()


def load_weights(module: torch.nn.Module, path: str | os.PathLike, strict: bool = True,
                 expect: dict | None = None) -> dict:
    """Load weights saved by ``save_model`` into an existing ``module``; returns the meta dict."""
    state, meta = load_checkpoint(path, expect=expect)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    if strict:
        check_state_dict(module, state, source=f"checkpoint {path}")
    module.load_state_dict(state, strict=strict)
    return meta
