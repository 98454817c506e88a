"""Every week09 test is offline and keeps Hugging Face's caches inside its tmp_path."""

import pytest


@pytest.fixture(autouse=True)
def hf_offline(tmp_path, monkeypatch):
    """No hub, and no datasets / hub cache outside tmp_path (the loaders read local files)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config as dc
    monkeypatch.setattr(dc, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(dc, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    monkeypatch.setattr(dc, "HF_HUB_OFFLINE", True)
