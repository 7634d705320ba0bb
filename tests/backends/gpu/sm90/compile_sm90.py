"""Compile gpu-backend kernels for an NVIDIA sm_90 GPU (H100/H200) without one, and report
what ptxas says about each: registers per thread, bytes spilled, and the memory-model
instructions of the cooperative barrier.

    python compile_sm90.py CASES.json      (a list of cases, see test_sm90_build.py)

Prints one JSON line per case when it starts and one when it is built, so a compiler
crash (which kills the process) names its case. Needs triton (its wheel bundles ptxas).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

INTS = {"s", "T", "B", "H", "P", "s_begin", "s_end",
        "k_t", "k_b", "k_n", "kh_t", "kh_b", "kh_n", "kc_t", "kc_b", "kc_n"}  # mask strides
INT_POINTERS = {"lens_ptr", "sync", "status"}
# fp32 carries and the layer norms' recomputed v̂ and rstd, any dtype
FP32_POINTERS = {"h_state", "c_state", "dh_carry", "dc_state", "du_dir", "dh_dir", "v_hh",
                 "rstd_hh"}


def ptxas() -> str:
    """The newest ptxas in the triton wheel (the plain one may predate Triton's PTX)."""
    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for name in ("ptxas-blackwell", "ptxas"):
        path = os.path.join(bin_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"no ptxas in {bin_dir}")


def build(case: dict) -> dict:
    module = importlib.import_module(f"rnnlab.backends.gpu.{case['module']}")
    fn = getattr(module, case["kernel"])
    consts = case["constexprs"]
    dtype = case["dtype"]
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name in INTS:
            signature[name] = "i32"
        elif name in INT_POINTERS:
            signature[name] = "*i32"
        elif name in FP32_POINTERS:
            signature[name] = "*fp32"
        else:
            signature[name] = f"*{dtype}"
    kernel = triton.compile(
        ASTSource(fn=fn, signature=signature, constexprs=consts),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": case["num_warps"], "num_stages": case.get("num_stages", 3),
                 **({"maxnreg": case["maxnreg"]} if case.get("maxnreg") else {})},
    )
    ptx = kernel.asm["ptx"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    done = subprocess.run([ptxas(), "-arch=sm_90a", "-v", f.name, "-o", os.devnull],
                          capture_output=True, text=True)
    os.unlink(f.name)
    if done.returncode:
        raise RuntimeError(f"ptxas failed: {done.stderr[-2000:]}")
    report = done.stderr
    return {
        "registers": int(re.search(r"Used (\d+) registers", report).group(1)),
        "spill_bytes": int(re.search(r"(\d+) bytes spill stores", report).group(1)),
        "release_adds": len(re.findall(r"red\.global\.gpu\.release\.add", ptx)),
        "acquire_loads": len(re.findall(r"ld\.global\.gpu\.acquire", ptx)),
        "volatile_loads": len(re.findall(r"ld\.volatile\.global", ptx)),
        "mma": len(re.findall(r"\b(?:wgmma|mma)\.", ptx)),
    }


def main(path: str) -> None:
    with open(path) as f:
        cases = json.load(f)
    for case in cases:
        print(json.dumps({"start": case["name"]}), flush=True)
        print(json.dumps({"name": case["name"], **build(case)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
