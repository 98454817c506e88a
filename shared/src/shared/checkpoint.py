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


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def save_model(path: str | os.PathLike, module: torch.nn.Module, meta: dict | None = None) -> Path:
    """Save a module's state dict (tied weights stored once)."""
    return save_checkpoint(path, module.state_dict(), meta)


def load_model(module: torch.nn.Module, path: str | os.PathLike, strict: bool = True,
               expect: dict | None = None) -> dict:
    """Load weights saved by ``save_model`` into ``module``; returns the meta dict."""
    state, meta = load_checkpoint(path, expect=expect)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    if strict:
        check_state_dict(module, state, source=f"checkpoint {path}")
    module.load_state_dict(state, strict=strict)
    return meta
