"""Repo-wide pytest setup.

Tests run with ``--import-mode=importlib``, so same-named test files in
different weeks do not clash. In that mode pytest names a test module after
its path (``week01_transformer/tests/test_gpt.py`` -> ``week01_transformer.tests.test_gpt``)
and, if the first part is not imported yet, creates an empty namespace module
from the *folder* ``week01_transformer/``, which would shadow the installed
package ``week01_transformer`` (it lives in ``week01_transformer/src/``).
Importing each package first makes pytest attach the test modules to the real
package instead.

Every test also starts from the same random state (``_seed_every_test``), so a
test's random inputs do not depend on which tests ran before it or on the
selection (``-k``, one file, the whole suite).
"""

import importlib
import os
import random
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# derived data (the parsed pydocs corpus) is cached outside the user's home during tests
os.environ.setdefault("NANOCHAT_CACHE", os.path.join(tempfile.gettempdir(), "nanochat-test-cache"))
# hypothesis writes its example database into the working directory by default
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "nanochat-hypothesis"))

# Triton (week08's FlashAttention-2 kernels) runs on a machine without CUDA only in its
# interpreter, and it reads that switch when it is first imported, which bitsandbytes, peft
# and transformers do long before week08's tests run: so decide here, before any of them
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

ROOT = Path(__file__).parent
for src in sorted([*ROOT.glob("*/src/*/__init__.py"), *ROOT.glob("tracks/*/src/*/__init__.py")]):
    name = src.parent.name
    if src.parent.parent.parent.name == name:  # folder name == package name: the clash above
        try:
            importlib.import_module(name)
        except Exception:
            pass  # not installed or broken: its own tests will report that clearly


@pytest.fixture(autouse=True)
def _seed_every_test():
    """Seed ``random``, NumPy and PyTorch (CPU) to 0 before each test. Tests should still
    pass explicit generators for their inputs; this only makes the rest (module init,
    library defaults) repeatable."""
    random.seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
