"""Every kernel the gpu backend would launch on an H100/H200 builds for sm_90 — here, with
no GPU: Triton compiles it to PTX and the ptxas in Triton's wheel assembles it.

What this catches before any GPU time is spent: compiler crashes (Triton 3.9 crashed on
the persistent kernels' exact-fp32 FMA products, so fp32 runs persistent only as 3xTF32
and exact fp32 takes the cooperative kernel), register spills at the sizes the
dispatcher picks (the block sizes and budgets come from the library's own rules, so
changing them re-runs this), and a cooperative barrier that lost its release/acquire
pair or reads the exchange without volatile loads. Whether the kernels are *right* is
the interpreter suite's job (test_interpreter.py); how fast they are,
benchmarks/gpu_speed.py's.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)

HERE = Path(__file__).resolve().parent
SMS = 132  # H100 SXM / H200: the cooperative grid is at most one program per SM
DTYPES = {"fp32": 4, "bf16": 2}  # element bytes
SLOTS = {"rnn": 1, "lstm": 4, "gru": 4}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _cooperative_cases() -> list[dict]:
    from rnnlab.backends.gpu import _coop as X

    cases = []
    for family in ("rnn", "lstm", "gru"):
        for dtype in DTYPES:
            # one batch of 1, a small and a large layer, and a wide slice (BH 32)
            for B, H in ((1, 1024), (16, 256), (64, 1024), (1, 4096)):
                lay = X.layout(B, H, SLOTS[family], SMS)
                assert lay is not None, (family, B, H)
                for direction, k_size, n_size in (("fwd", H, SLOTS[family] * lay.BH),
                                                  ("bwd", GATES[family] * H, lay.BU)):
                    # exact fp32 on a GPU never holds its weights (the library's rule)
                    settings = X.launch_settings(lay, k_size, n_size, DTYPES[dtype],
                                                 hold_ok=dtype != "fp32")
                    consts = {
                        "BB": settings["BB"], "BH": settings["BH"], "BK": settings["BK"],
                        "KQ": settings["KQ"], "HELD": settings["HELD"],
                        "REVERSE": False, "SYNC": True, "UPCAST": False,
                        "PRECISION": "ieee",
                    }
                    if direction == "fwd":
                        consts["HAS_PROBE"] = True
                    else:
                        consts.update(BU=lay.BU, STORE_DH=True)
                    if family == "rnn":
                        consts["RELU"] = False
                    if family == "gru" and direction == "fwd":
                        consts["HAS_BIAS"] = True
                    held = "held" if settings["HELD"] else "streamed"
                    cases.append({
                        "name": f"{family}-{direction}-coop-{dtype}-B{B}-H{H}-{held}",
                        "module": family, "kernel": f"_{family}_{direction}_coop",
                        "dtype": dtype, "constexprs": consts,
                        "num_warps": settings["num_warps"],
                        "num_stages": settings["num_stages"],
                        "maxnreg": settings["maxnreg"],
                    })
    return cases


def _largest_persistent(family: str, dtype: str) -> int:
    """The largest padded H the dispatcher still sends to the persistent path."""
    from rnnlab.backends.gpu import _tuning

    HP = 16
    while GATES[family] * (2 * HP) ** 2 * DTYPES[dtype] <= _tuning.ON_CHIP_BYTES:
        HP *= 2
    return HP


def _persistent_cases() -> list[dict]:
    from rnnlab.backends.gpu import _common as C
    from rnnlab.backends.gpu import _tuning

    cases = []
    for family in ("rnn", "lstm", "gru"):
        for dtype in DTYPES:
            HP = _largest_persistent(family, dtype)
            # fp32 runs persistent only as 3xTF32 ("high"); exact fp32 goes cooperative
            precision = "tf32x3" if dtype == "fp32" else "ieee"
            variants = {"rnn": [{"RELU": False}],
                        "lstm": [{"HAS_PROJ": False, "PP": HP}],
                        "gru": [{"RESET_AFTER": True}, {"RESET_AFTER": False}]}[family]
            if family == "lstm" and dtype == "bf16":  # fp32 with projection: tiled path
                variants.append({"HAS_PROJ": True, "PP": HP // 2})
            for variant in variants:
                PP = variant.get("PP", HP)
                weight_bytes = (GATES[family] * HP * PP + HP * PP * variant.get("HAS_PROJ", 0)
                                ) * DTYPES[dtype]
                for direction in ("fwd", "bwd"):
                    consts = {"HP": HP, "BLOCK_B": _tuning.BLOCK_B, "REVERSE": False,
                              "UPCAST": False, "PRECISION": precision, **variant}
                    if direction == "fwd":
                        consts["HAS_PROBE"] = True
                        if family == "gru":
                            consts["HAS_BIAS"] = True
                    else:
                        consts["STORE_DH"] = True
                    if family == "gru" and direction == "bwd":
                        consts.pop("HAS_PROBE", None)
                    tag = "-".join(f"{k}{int(v)}" for k, v in variant.items() if k != "PP")
                    cases.append({
                        "name": f"{family}-{direction}-persistent-{dtype}-HP{HP}-{tag}",
                        "module": family, "kernel": f"_{family}_{direction}_persistent",
                        "dtype": dtype, "constexprs": consts,
                        "num_warps": C.num_warps(weight_bytes),
                    })
    return cases


def _tiled_cases() -> list[dict]:
    """Every pointwise kernel of the tiled path, every flag on (they have no products)."""
    from rnnlab.backends.gpu import _tuning

    cases = []
    for family in ("rnn", "lstm", "gru", "masked_lstm", "masked_gru"):
        module = importlib.import_module(f"rnnlab.backends.gpu.{family}")
        kernels = [name for name, value in vars(module).items() if name.startswith("_") and
                   name.endswith("_tile") and value.fn.__module__ == module.__name__]
        for name in kernels:
            fn = getattr(module, name)
            consts = {fn.arg_names[i]: True for i in fn.constexprs}
            consts.update(TILE_B=_tuning.TILE_B, TILE_H=_tuning.TILE_H)
            for dtype in DTYPES:
                cases.append({"name": f"{family}-{name}-{dtype}", "module": family,
                              "kernel": name, "dtype": dtype, "constexprs": consts,
                              "num_warps": 4})
    return cases


def _row_cases() -> list[dict]:
    """The layer-normalised cells' row kernels, every flag on, at the row tiles the
    dispatcher picks for a small (4 warps), a middle and the largest unspilled layer."""
    from rnnlab.backends.gpu.lnlstm import row_settings

    cases = []
    for family in ("lnlstm", "lngru"):
        for direction in ("fwd", "bwd"):
            name = f"_{family}_{direction}_rows"
            module = importlib.import_module(f"rnnlab.backends.gpu.{family}")
            fn = getattr(module, name)
            for H in (16, 256, 2048):
                _, settings = row_settings(64, H)
                consts = {fn.arg_names[i]: True for i in fn.constexprs}
                consts.update(ROWS=settings["ROWS"], HP=settings["HP"])
                for dtype in DTYPES:
                    cases.append({"name": f"{family}-{direction}-rows-{dtype}-H{H}",
                                  "module": family, "kernel": name, "dtype": dtype,
                                  "constexprs": consts, "num_warps": settings["num_warps"]})
    return cases


def _min_cases() -> list[dict]:
    """The min cells' scan kernels (forward states, backward adjoints), both cells, every
    flag on, at the chunk and unit block the dispatcher uses."""
    from rnnlab.backends.gpu import min as gpu_min

    cases = []
    for name in ("_states", "_adjoints"):
        fn = getattr(gpu_min, name)
        for lstm in (False, True):
            consts = {fn.arg_names[i]: True for i in fn.constexprs}
            consts.update(BLOCK_T=gpu_min.BLOCK_T, BLOCK_H=gpu_min.BLOCK_H, LSTM=lstm)
            for dtype in DTYPES:
                cases.append({"name": f"min-{name}-{'lstm' if lstm else 'gru'}-{dtype}",
                              "module": "min", "kernel": name, "dtype": dtype,
                              "constexprs": consts, "num_warps": 4})
    return cases


def _assert_fits_registers(report: dict) -> None:
    """No spills where the kernel is out of registers (255 a thread). ptxas sometimes
    keeps a word or two in local memory while using far fewer registers (seen: 8 bytes at
    80): that is its scheduling choice, not pressure, and costs an L1 access."""
    assert report["spill_bytes"] == 0 or (
        report["registers"] < 255 and report["spill_bytes"] <= 16), report


@pytest.fixture
def triton_cache(request, tmp_path) -> Path:
    """Triton's compile cache for these builds: kept between runs in pytest's cache folder
    (like the cpu backend's kernels), else a fresh one. Triton keys each entry by the
    kernel's source and everything it calls, the options and its own version, so an
    edited kernel compiles again; ptxas reads the PTX anew on every run, so spills and
    barrier instructions are checked every time."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    return cache.mkdir("triton-sm90") if cache is not None else tmp_path / "triton-cache"


def _build(cases: list[dict], tmp_path: Path, triton_cache: Path) -> dict[str, dict]:
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RNNLAB_", "TRITON_"))}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9's default, without its warning
    env["TRITON_CACHE_DIR"] = str(triton_cache)
    done = subprocess.run([sys.executable, str(HERE / "sm90" / "compile_sm90.py"), str(spec)],
                          env=env, capture_output=True, text=True, timeout=900)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    built = {line["name"]: line for line in lines if "name" in line}
    if done.returncode:
        crashed = lines[-1].get("start") if lines else None
        pytest.fail(f"building {crashed} for sm_90 failed (exit {done.returncode}):\n"
                    f"{done.stderr[-3000:]}")
    return built


def test_cooperative_kernels_build_without_spills_and_keep_their_barrier(tmp_path, triton_cache):
    cases = _cooperative_cases()
    built = _build(cases, tmp_path, triton_cache)
    for case in cases:
        report = built[case["name"]]
        _assert_fits_registers(report)
        if case["dtype"] == "bf16":  # exact fp32 ("ieee") runs on the FMA units instead
            assert report["mma"] > 0, f"{case['name']}: the product left the tensor cores"
        # one release add per barrier arrival, acquire loads before and in the spin loop
        assert report["release_adds"] >= 1 and report["acquire_loads"] >= 1, report
        assert report["volatile_loads"] >= 1, f"{case['name']}: exchange read not volatile"
    assert any("-held" in case["name"] for case in cases), "no case holds its weights"


def test_persistent_kernels_build_without_spills(tmp_path, triton_cache):
    cases = _persistent_cases()
    built = _build(cases, tmp_path, triton_cache)
    for case in cases:
        report = built[case["name"]]
        _assert_fits_registers(report)
        assert report["release_adds"] == 0, "the persistent path never synchronises programs"


def test_tiled_kernels_build_without_spills(tmp_path, triton_cache):
    cases = _tiled_cases()
    assert len(cases) == 2 * 16, "a tiled kernel was added or lost: update this count"
    built = _build(cases, tmp_path, triton_cache)
    for case in cases:
        _assert_fits_registers(built[case["name"]])


def test_layer_norm_row_kernels_build_without_spills(tmp_path, triton_cache):
    cases = _row_cases()
    built = _build(cases, tmp_path, triton_cache)
    for case in cases:
        _assert_fits_registers(built[case["name"]])


def test_min_scan_kernels_build_without_spills(tmp_path, triton_cache):
    cases = _min_cases()
    built = _build(cases, tmp_path, triton_cache)
    for case in cases:
        _assert_fits_registers(built[case["name"]])
