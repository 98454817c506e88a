"""The Triton kernels compile for a GPU, without one: ``triton.compile`` for sm_90 (H100).

The CPU tests run the kernels in Triton's interpreter, which does not lower them; a type
error in a compile-time branch, an unsupported dot or a layout problem would only show on
a GPU. This compiles the forward and both backward kernels through PTX to a cubin (the
wheel ships ``ptxas``) for bf16 causal and fp32 masked, in a subprocess without
``TRITON_INTERPRET`` (which would turn the kernels into interpreted functions). It does
not run them: on a CUDA machine ``test_flash_triton.py`` does.
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

triton = pytest.importorskip("triton")

CODE = r'''
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from week08_sota import flash_triton as ft

def signature(fn, dt, consts):
    acc = "fp64" if dt == "fp64" else "fp32"
    ptr = {**{n: "*" + dt for n in ("Q", "K", "V", "O", "DO", "DK", "DV", "DQ")},
           "LSE": "*" + acc, "Dl": "*" + acc, "M": "*i8"}
    return {n: "constexpr" if n in consts else ptr.get(n, "fp32" if n == "scale" else "i32")
            for n in fn.arg_names}

for dt, causal in (("bf16", True), ("fp32", False)):
    c = dict(CAUSAL=causal, HAS_MASK=not causal, IEEE=dt == "fp32", BLOCK_M=64, BLOCK_N=64,
             BLOCK_D=64, BLOCK_DV=32)
    for fn in (ft._fwd, ft._bwd_dkdv, ft._bwd_dq, ft._bwd_preprocess):
        cc = {k: v for k, v in c.items() if k in fn.arg_names}
        k = triton.compile(ASTSource(fn, signature(fn, dt, cc), constexprs=cc),
                           target=GPUTarget("cuda", 90, 32))
        assert k.asm["cubin"], fn
        print("compiled", dt, fn.__name__)
'''


def test_kernels_compile_to_cubin_for_sm90(tmp_path):
    try:
        from triton.backends import backends
    except ImportError:
        backends = {}
    if "nvidia" not in backends:
        pytest.skip("this triton has no NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # not the user's ~/.triton
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("compiled") == 8
