"""An adapter store on disk: one file per LoRA adapter and a manifest that says which are real.

Layout of a store folder::

    manifest.json                    {"format", "version", "adapters": {name: entry}, "blobs": {...}}
    adapters/<slug>-<stamp>.safetensors   week06 adapter files (save_adapter / load_adapter)
    blobs/<key>-<stamp>.safetensors       other tensors (the router's prototypes), shared checkpoints

A save never overwrites anything in place. It writes the new file under a
fresh name (atomically, via week06's ``save_adapter`` which uses
``shared.save_checkpoint``), records its SHA-256, and only then replaces the
manifest (temp file, fsync, ``os.replace``, fsync of the folder). The
manifest is the commit point: a run killed at any instant leaves either the
old manifest or the new one, and every file either names is complete and
verified by its hash on load. Files a killed run wrote but never committed
are orphans; ``gc()`` deletes them.

A name may be any string, hierarchical ones included (``"domain/task/user"``):
file names use a filesystem-safe slug of it, and only the manifest holds the
real name.

Left out: concurrent writers (one process owns a store at a time), remote
storage and deduplication of identical adapters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import torch.nn as nn

from shared import CheckpointError, load_checkpoint, save_checkpoint
from week06_lora import load_adapter, save_adapter

MANIFEST = "manifest.json"
FORMAT = "week07-adapter-store"
VERSION = 1

# ---------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stamp() -> str:
    return f"{time.time_ns():x}-{os.getpid()}"


def _slug(name: str) -> str:
    """A file-name-safe form of ``name`` (``"a/b c"`` -> ``"a_b_c"``); the stamp keeps files
    of names with the same slug apart."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:80] or "_"


# ---------------------------------------------------------------- the store


class AdapterStore:
    """Named LoRA adapters (and tensor blobs) in a folder, committed through a manifest."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = self._read_manifest()

    # -- manifest
    def _read_manifest(self) -> dict:
        path = self.root / MANIFEST
        if not path.exists():
            return {"format": FORMAT, "version": VERSION, "adapters": {}, "blobs": {}}
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path} is corrupt ({e}); it is only ever replaced atomically, "
                                  "so something other than AdapterStore wrote it") from None
        if m.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an adapter-store manifest "
                                  f"(format {m.get('format')!r}, expected {FORMAT!r})")
        return m

    def _commit(self) -> None:
        path = self.root / MANIFEST
        tmp = self.root / f".{MANIFEST}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)

    # -- adapters
    def names(self) -> list[str]:
        return list(self.manifest["adapters"])

    def __contains__(self, name: str) -> bool:
        return name in self.manifest["adapters"]

    def __len__(self) -> int:
        return len(self.manifest["adapters"])

    def entry(self, name: str) -> dict:
        if name not in self:
            raise KeyError(f"no adapter {name!r} in the store at {self.root}; stored: {self.names()}")
        return self.manifest["adapters"][name]

    def save(self, name: str, model: nn.Module, adapter: str | None = None,
             meta: dict | None = None) -> Path:
        """Store adapter ``adapter`` (default: ``name``) of ``model`` under ``name``; returns the file."""
        adapter = adapter or name
        rel = Path("adapters") / f"{_slug(name)}-{_stamp()}.safetensors"
        path = save_adapter(self.root / rel, model, adapter)
        old = self.manifest["adapters"].get(name)
        self.manifest["adapters"][name] = {
            "file": str(rel), "sha256": _sha256(path), "meta": meta or {},
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._commit()
        if old is not None and old["file"] != str(rel):
            (self.root / old["file"]).unlink(missing_ok=True)
        return path

    def _verified(self, entry: dict, what: str) -> Path:
        path = self.root / entry["file"]
        if not path.exists():
            raise CheckpointError(f"{what}: file {path} listed in the manifest is missing")
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{what}: file {path} does not match its SHA-256 in the manifest")
        return path

    def verified_path(self, name: str) -> Path:
        """The file of stored adapter ``name``, after checking it exists and matches its hash."""
        return self._verified(self.entry(name), f"adapter {name!r}")

    def load(self, name: str, model: nn.Module, adapter: str | None = None, activate: bool = False,
             freeze_base: bool = True) -> str:
        """Load stored adapter ``name`` into ``model`` (as ``adapter``, default ``name``)."""
        path = self.verified_path(name)
        return load_adapter(path, model, adapter=adapter or name, activate=activate,
                            freeze_base=freeze_base)

    def delete(self, name: str) -> None:
        entry = self.entry(name)
        del self.manifest["adapters"][name]
        self._commit()
        (self.root / entry["file"]).unlink(missing_ok=True)

    # -- blobs (any state shared.save_checkpoint can hold)
    def save_blob(self, key: str, state, meta: dict | None = None) -> Path:
        rel = Path("blobs") / f"{_slug(key)}-{_stamp()}.safetensors"
        path = save_checkpoint(self.root / rel, state, meta or {})
        old = self.manifest["blobs"].get(key)
        self.manifest["blobs"][key] = {"file": str(rel), "sha256": _sha256(path)}
        self._commit()
        if old is not None and old["file"] != str(rel):
            (self.root / old["file"]).unlink(missing_ok=True)
        return path

    def load_blob(self, key: str):
        if key not in self.manifest["blobs"]:
            raise KeyError(f"no blob {key!r} in the store at {self.root}; stored: "
                           f"{list(self.manifest['blobs'])}")
        return load_checkpoint(self._verified(self.manifest["blobs"][key], f"blob {key!r}"))

    # -- housekeeping
    def gc(self) -> list[Path]:
        """Delete files no manifest entry names (left by a killed run); returns them."""
        keep = {self.root / e["file"] for section in ("adapters", "blobs")
                for e in self.manifest[section].values()}
        removed = []
        for sub in ("adapters", "blobs"):
            for p in sorted((self.root / sub).glob("*")) if (self.root / sub).exists() else []:
                if p not in keep:
                    p.unlink()
                    removed.append(p)
        for p in self.root.glob(f".{MANIFEST}.tmp-*"):
            p.unlink()
            removed.append(p)
        return removed

    def nbytes(self) -> int:
        """Bytes on disk of every committed file."""
        return sum((self.root / e["file"]).stat().st_size for section in ("adapters", "blobs")
                   for e in self.manifest[section].values())
