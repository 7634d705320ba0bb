"""GPU speed: rnnlab's Triton backend vs torch.nn (cuDNN), FlashRNN and a loop of torch ops.

One prepared run, correctness first, then timing:

1. correctness: rnnlab.nn (gpu backend forced, every execution path: persistent,
   cooperative — also launched once per step, to tell a barrier fault from an arithmetic
   one — tiled, tiled in a CUDA graph) vs torch.nn on cuDNN with the same weights —
   outputs, final states and every gradient — in fp32 (TF32 off on both sides) and bf16
   (looser tolerance), H up to 1024. A path that fails any check is not timed (exit 1);
   a cooperative barrier that timed out (the kernel's fallback) counts as a failure.
2. timing on the issue's grid B ∈ {1, 16, 64, 256}, H ∈ {128, 512, 1024}, T ∈ {256, 1024},
   RNN (tanh) / LSTM / GRU, forward and forward+backward, fp32 and bf16: CUDA events,
   warm-up, rnnlab and cuDNN interleaved, medians. FlashRNN (fused CUDA kernel) joins
   where it imports; the loop of torch ops (rnnlab's portable backend) on a subset.
3. the per-step latency of each measurement against the recurrence's roofline: recurrent
   FLOPs and W_hh bytes per step.
4. the cells torch.nn lacks (minGRU, minLSTM, layer-normalised LSTM and GRU, LSTM and GRU
   with zoneout and recurrent dropout), at one size: the gpu backend checked against the
   same layer on the portable backend (torch ops, same device, weights and masks), then
   timed against it, and the regularised layers against the plain one.

Writes benchmarks/results/gpu.json and gpu.md. Without a CUDA device (or without triton)
it stops at once with exit status 2 and says why.

    python benchmarks/gpu_speed.py            # the full grid
    python benchmarks/gpu_speed.py --quick    # B=16, H ∈ {128, 1024}, T=256
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

import rnnlab
import rnnlab.nn

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = {"rnn": (1, "RNN", "elman"), "lstm": (4, "LSTM", "lstm"), "gru": (3, "GRU", "gru")}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOL = {"fp32": (1e-4, 1e-3), "bf16": (5e-2, 1e-1)}  # (outputs, gradients), relative to max
# The cells beyond torch.nn's: (rnnlab.nn class, options); "plain" is the layer that a
# regularised one is timed against.
NEW_CELLS = {
    "mingru": ("MinGRU", {}), "minlstm": ("MinLSTM", {}),
    "lnlstm": ("LSTM", {"layer_norm": True}), "lngru": ("GRU", {"layer_norm": True}),
    "lstm+zoneout+rdrop": ("LSTM", {"zoneout": 0.1, "recurrent_dropout": 0.1}),
    "gru+zoneout+rdrop": ("GRU", {"zoneout": 0.1, "recurrent_dropout": 0.1}),
}


DEVICE = torch.device("cuda")  # --smoke: the CPU, through Triton's interpreter


def _fail_fast(smoke: bool) -> None:
    """Exit with status 2 and one clear line when this machine cannot run the benchmark."""
    problem = None
    if importlib.util.find_spec("triton") is None:
        problem = "needs triton (pip install triton)"
    elif smoke and os.environ.get("TRITON_INTERPRET") != "1":
        problem = "--smoke runs the kernels through Triton's interpreter: set TRITON_INTERPRET=1"
    elif not smoke and not torch.cuda.is_available():
        problem = (f"needs a CUDA device: torch.cuda.is_available() is False (torch "
                   f"{torch.__version__})")
    elif not smoke and os.environ.get("TRITON_INTERPRET") == "1":
        problem = "unset TRITON_INTERPRET: timing the interpreter measures nothing useful"
    if problem:
        print(f"gpu_speed.py {problem}. Nothing was measured.", file=sys.stderr)
        sys.exit(2)


# rnnlab's execution paths (see rnnlab/backends/gpu/_common.py), as environment settings.
# "stepwise" is the cooperative kernel launched once per step (no grid barrier): checked
# for correctness only, to tell a wrong barrier from wrong arithmetic.
PATHS = {
    "auto": {"RNNLAB_GPU_PATH": "auto"},  # rnnlab's own choice: named in each row, not timed
    "persistent": {"RNNLAB_GPU_PATH": "persistent", "RNNLAB_GPU_GRAPHS": "0"},
    "cooperative": {"RNNLAB_GPU_PATH": "cooperative", "RNNLAB_GPU_GRID_SYNC": "1",
                    "RNNLAB_GPU_GRAPHS": "0"},
    "stepwise": {"RNNLAB_GPU_PATH": "cooperative", "RNNLAB_GPU_GRID_SYNC": "0",
                 "RNNLAB_GPU_GRAPHS": "0"},
    "tiled": {"RNNLAB_GPU_PATH": "tiled", "RNNLAB_GPU_GRAPHS": "0"},
    "graphs": {"RNNLAB_GPU_PATH": "tiled", "RNNLAB_GPU_GRAPHS": "1"},
}
TIMED_PATHS = ["persistent", "cooperative", "tiled", "graphs"]


@contextlib.contextmanager
def _gpu_path(path: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in PATHS[path]}
    os.environ.update(PATHS[path])
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _persistent_bytes(cell: str, H: int, dtype: torch.dtype) -> int | None:
    """Bytes of W_hh the persistent kernel would hold for a layer of this test (input size
    H, no projection), or None where it does not run (the library's rule)."""
    from rnnlab.backends.gpu import _common

    padded = _common.pad(H)  # the kernel's block size
    return _common.on_chip_bytes(CELLS[cell][0] * padded * padded,
                                 torch.empty(0, dtype=dtype, device=DEVICE))


def _path_fits(path: str, cell: str, H: int, dtype: torch.dtype) -> bool:
    """The persistent path keeps W_hh in one program's registers: only up to the library's
    budget and not for exact fp32 (forcing it there would time the tiled fallback)."""
    from rnnlab.backends.gpu import _tuning

    weight_bytes = _persistent_bytes(cell, H, dtype)
    return path != "persistent" or (weight_bytes is not None
                                    and weight_bytes <= _tuning.ON_CHIP_BYTES)


def _auto_path(cell: str, B: int, H: int, dtype: torch.dtype) -> str:
    """The path rnnlab picks by itself for this layer (RNNLAB_GPU_PATH=auto), by the
    library's own rules: the table shows whether that is the fastest one measured."""
    from rnnlab.backends.gpu import _common, _coop

    coop = _coop.plan(B, H, 1 if cell == "rnn" else 4, DEVICE)
    with _gpu_path("auto"):
        return _common.choose_path(_persistent_bytes(cell, H, dtype), coop)


def _barrier_failed() -> str | None:
    """Why the cooperative path turned itself off in this process (a barrier timed out:
    its programs were not all resident), or None. After that, "cooperative" would time
    the tiled fallback, so it is reported as failed instead."""
    from rnnlab.backends.gpu import _coop

    return _coop._disabled[0] if _coop._disabled else None


def _pair(cell: str, H: int, dtype: torch.dtype, seed: int = 0):
    """A torch.nn layer and an rnnlab.nn layer with the same weights (input size = H)."""
    torch.manual_seed(seed)
    name = CELLS[cell][1]
    theirs = getattr(torch.nn, name)(H, H, device=DEVICE, dtype=dtype)
    ours = getattr(rnnlab.nn, name)(H, H, device=DEVICE, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _forward_backward(module, x, gy):
    y, _ = module(x)
    return torch.autograd.grad(y, [x, *module.parameters()], gy)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(b.float().abs().max().item(), 1.0)
    return (a.float() - b.float()).abs().max().item() / scale


def check_correctness(args, sizes: tuple[int, ...], T: int) -> list[dict]:
    """rnnlab (gpu backend) vs cuDNN per cell, dtype, size and path: a size the persistent
    path takes, and sizes (up to the grid's largest H) where rnnlab picks the cooperative
    kernel — every path is checked wherever it can run (the persistent one within the
    library's on-chip budget), the cooperative one also launched once per step."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    paths = list(args.paths) + (["stepwise"] if "cooperative" in args.paths else [])
    rows = []
    for cell in args.cells:
        for dname in args.dtypes:
            for H in sizes:
                for path in [p for p in paths if _path_fits(p, cell, H, DTYPES[dname])]:
                    row = {"cell": cell, "dtype": dname, "H": H, "path": path}
                    try:
                        row.update(_check_one(cell, DTYPES[dname], H, T, path))
                    except Exception as err:  # a kernel that does not compile or run fails
                        row.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
                    if path == "cooperative" and _barrier_failed():
                        row.update(ok=False, error=_barrier_failed())
                    rows.append(row)
                    print(f"check {cell:4s} {dname} H={H:4d} {path:10s} "
                          + ("ok" if row["ok"] else "FAILED") + f" {row}", flush=True)
    return rows


def _check_one(cell: str, dtype: torch.dtype, H: int, T: int, path: str) -> dict:
    theirs, ours = _pair(cell, H, dtype, seed=H)
    x = torch.randn(T, 5, H, device=DEVICE, dtype=dtype, requires_grad=True)
    gy = torch.randn(T, 5, H, device=DEVICE, dtype=dtype)
    y_ref, h_ref = theirs(x)
    g_ref = torch.autograd.grad(y_ref, [x, *theirs.parameters()], gy)
    with rnnlab.use_backend("gpu"), _gpu_path(path):
        y, h = ours(x)
        g = torch.autograd.grad(y, [x, *ours.parameters()], gy)
    finals = zip(h, h_ref, strict=True) if cell == "lstm" else [(h, h_ref)]
    out_err = max([_rel_err(y, y_ref), *(_rel_err(a, b) for a, b in finals)])
    grad_err = max(_rel_err(a, b) for a, b in zip(g, g_ref, strict=True))
    out_tol, grad_tol = TOL[next(k for k, v in DTYPES.items() if v == dtype)]
    return {"output_rel_err": out_err, "grad_rel_err": grad_err,
            "ok": out_err <= out_tol and grad_err <= grad_tol}


def _time(fns: dict[str, Callable[[], object]], warmup: int, reps: int) -> dict[str, float]:
    """Median milliseconds of each fn, measured interleaved with CUDA events."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            samples[name].append(_elapsed_ms(fn))
    return {k: statistics.median(v) for k, v in samples.items()}


def _elapsed_ms(fn: Callable[[], object]) -> float:
    if DEVICE.type != "cuda":  # --smoke: wall clock
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _flashrnn_fns(cell: str, B: int, T: int, H: int, dname: str):
    """FlashRNN's fused CUDA kernel on the same problem size, or the reason it cannot run."""
    try:
        from flashrnn import flashrnn
    except ImportError:
        try:
            from flashrnn.flashrnn import flashrnn
        except ImportError as err:
            return None, f"not installed ({err})"
    gates, _, function = CELLS[cell]
    dtype = DTYPES[dname]
    dname_long = {"fp32": "float32", "bf16": "bfloat16"}[dname]
    Wx = torch.randn(B, T, gates, 1, H, device=DEVICE, dtype=dtype, requires_grad=True)
    R = (torch.randn(gates, 1, H, H, device=DEVICE, dtype=dtype) * H**-0.5).requires_grad_()
    b = torch.zeros(gates, 1, H, device=DEVICE, dtype=dtype, requires_grad=True)

    def fwd():
        with torch.no_grad():
            return flashrnn(Wx, R, b, function=function, backend="cuda_fused", dtype=dname_long)

    def fwd_bwd():
        h, _ = flashrnn(Wx, R, b, function=function, backend="cuda_fused", dtype=dname_long)
        return torch.autograd.grad(h.sum(), [Wx, R, b])

    try:
        fwd()
        fwd_bwd()
    except Exception as err:  # FlashRNN rejects some sizes and dtypes: report, go on
        return None, f"{type(err).__name__}: {str(err)[:160]}"
    return {"fwd": fwd, "fwd_bwd": fwd_bwd}, ""


def _roofline(cell: str, B: int, H: int, dtype: torch.dtype) -> dict[str, float]:
    G = CELLS[cell][0] * H
    elem = torch.finfo(dtype).bits // 8
    return {"flops_per_step": 2.0 * B * G * H, "weight_bytes_per_step": float(G * H * elem)}


def time_grid(args, report: dict, save: Callable[[], None]) -> None:
    """Time every configuration, cheapest first, until the time budget is spent."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    started = time.monotonic()
    for T in sorted(args.T):
        for H in sorted(args.H):
            for B in sorted(args.B):
                for cell in args.cells:
                    for dname in args.dtypes:
                        if time.monotonic() - started > args.budget_s:
                            report["truncated"] = True
                            print("time budget spent: the grid is truncated", flush=True)
                            return
                        report["results"] += _time_one(
                            cell, dname, DTYPES[dname], B, H, T, args
                        )
                        save()
                        if DEVICE.type == "cuda":
                            torch.cuda.empty_cache()


def _time_one(cell, dname, dtype, B, H, T, args) -> list[dict]:
    theirs, ours = _pair(cell, H, dtype)
    x = torch.randn(T, B, H, device=DEVICE, dtype=dtype, requires_grad=True)
    gy = torch.randn(T, B, H, device=DEVICE, dtype=dtype)
    flash, flash_note = (None, "skipped") if args.no_flashrnn else _flashrnn_fns(
        cell, B, T, H, dname)
    rows = []
    for mode in ("fwd", "fwd_bwd"):
        def run(module, mode=mode):
            if mode == "fwd":
                with torch.no_grad():
                    return module(x)
            return _forward_backward(module, x, gy)

        fns: dict[str, Callable[[], object]] = {"cudnn": lambda: run(theirs)}
        for path in [p for p in args.paths if _path_fits(p, cell, H, dtype)]:
            if path == "cooperative" and _barrier_failed():
                continue
            def ours_fn(path=path):
                with rnnlab.use_backend("gpu"), _gpu_path(path):
                    return run(ours)
            try:
                ours_fn()
                fns[f"rnnlab_{path}"] = ours_fn
            except Exception as err:  # e.g. a persistent kernel out of on-chip resources
                print(f"  rnnlab {path} cannot run {cell} B={B} H={H}: {err}", flush=True)
        if flash is not None:
            fns["flashrnn"] = flash[mode]
        if T in args.loop_T and B in args.loop_B:
            def loop_fn():
                with rnnlab.use_backend("portable"):
                    return run(ours)
            fns["torch_loop"] = loop_fn
        ms = _time(fns, args.warmup, args.reps)
        ours_ms = {k: v for k, v in ms.items() if k.startswith("rnnlab_")}
        best = min(ours_ms, key=ours_ms.get) if ours_ms else None
        row = {"cell": cell, "dtype": dname, "B": B, "H": H, "T": T, "mode": mode,
               "ms": ms, "flashrnn_note": flash_note if flash is None else "",
               **_roofline(cell, B, H, dtype)}
        row["auto_path"] = _auto_path(cell, B, H, dtype)
        if best is not None:
            step_us = ours_ms[best] * 1e3 / T
            row.update({
                "rnnlab_best": best, "rnnlab_ms": ours_ms[best],
                "speedup_vs_cudnn": ms["cudnn"] / ours_ms[best],
                "speedup_vs_loop": ms["torch_loop"] / ours_ms[best] if "torch_loop" in ms
                else None,
                "step_us": step_us,
                "cudnn_step_us": ms["cudnn"] * 1e3 / T,
                "weight_GBps_at_step": row["weight_bytes_per_step"] / step_us / 1e3,
                "TFLOPs_at_step": row["flops_per_step"] / step_us / 1e6,
            })
        rows.append(row)
        print(f"{cell:4s} {dname} {mode:7s} B={B:3d} H={H:4d} T={T:4d} "
              + " ".join(f"{k}={v:.3f}ms" for k, v in ms.items()), flush=True)
    return rows


def time_new_cells(args, report: dict, save: Callable[[], None]) -> None:
    """The cells torch.nn lacks, at (B, H, T) = args.new_size, each dtype: rnnlab's gpu
    backend checked against its portable backend (forward and every gradient, the same
    weights, inputs and dropout masks), then both timed, forward and forward+backward; the
    regularised layers also against the plain layer of their cell on the gpu backend."""
    B, H, T = args.new_size
    for name, (cls, options) in NEW_CELLS.items():
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            torch.manual_seed(0)
            layer = getattr(rnnlab.nn, cls)(H, H, device=DEVICE, dtype=dtype, **options)
            plain = getattr(rnnlab.nn, cls)(H, H, device=DEVICE, dtype=dtype)
            x = torch.randn(T, B, H, device=DEVICE, dtype=dtype, requires_grad=True)
            gy = torch.randn(T, B, H, device=DEVICE, dtype=dtype)
            run = functools.partial(_run_new_cell, x=x, gy=gy)
            row = {"cell": name, "dtype": dname, "B": B, "H": H, "T": T}
            try:
                got, want = run(layer, "gpu", "fwd_bwd"), run(layer, "portable", "fwd_bwd")
                err = max(_rel_err(a, b) for a, b in zip(got, want, strict=True))
                row.update(grad_rel_err=err, ok=err <= TOL[dname][1])
            except Exception as err:  # a kernel that does not compile or run fails
                row.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
            if row["ok"]:
                for mode in ("fwd", "fwd_bwd"):
                    fns = {"rnnlab_gpu": functools.partial(run, layer, "gpu", mode),
                           "torch_ops": functools.partial(run, layer, "portable", mode)}
                    if options.get("zoneout"):
                        fns["plain_gpu"] = functools.partial(run, plain, "gpu", mode)
                    row[mode] = _time(fns, args.warmup, args.reps)
            report["new_cells"].append(row)
            save()
            print(f"new cell {name} {dname}: {row}", flush=True)


def _run_new_cell(module, backend: str, mode: str, *, x, gy):
    """One forward (no autograd) or forward+backward of ``module`` on ``backend``."""
    torch.manual_seed(1)  # the same dropout and zoneout masks on both backends
    with rnnlab.use_backend(backend):
        if mode == "fwd":
            with torch.no_grad():
                return module(x)
        return _forward_backward(module, x, gy)


def _new_cells_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "", "## The cells torch.nn lacks: gpu backend vs the same layer in torch ops", "",
        "Checked against the portable backend (torch ops on the same GPU, same weights, "
        "inputs and masks): the largest gradient error relative to the largest value. "
        "×ops = torch-op time / gpu-backend time; ×plain = the regularised layer's time / "
        "the plain layer's (target ≤ 1.3).", "",
        "| cell | dtype | B | H | T | check | fwd ms | ×ops | fwd+bwd ms | ×ops | ×plain |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        check = (f"{r['grad_rel_err']:.1e}" if "grad_rel_err" in r else "–") + (
            "" if r["ok"] else " FAILED " + r.get("error", ""))
        cells = []
        for mode in ("fwd", "fwd_bwd"):
            ms = r.get(mode)
            cells += ([f"{ms['rnnlab_gpu']:.3f}", f"{ms['torch_ops'] / ms['rnnlab_gpu']:.1f}"]
                      if ms else ["–", "–"])
        ms = r.get("fwd_bwd") or {}
        plain = f"{ms['rnnlab_gpu'] / ms['plain_gpu']:.2f}" if "plain_gpu" in ms else "–"
        lines.append(f"| {r['cell']} | {r['dtype']} | {r['B']} | {r['H']} | {r['T']} | {check} "
                     f"| {' | '.join(cells)} | {plain} |")
    return lines


def _markdown(meta: dict, checks: list[dict], rows: list[dict], truncated: bool,
              new_cells: list[dict] = ()) -> str:
    lines = [
        "# rnnlab gpu backend vs cuDNN",
        "",
        f"Device: {meta['device']} · torch {meta['torch']} · triton {meta['triton']} · "
        f"cuDNN {meta['cudnn']} · {meta['date']}",
        "",
        f"Correctness vs cuDNN: {sum(c['ok'] for c in checks)}/{len(checks)} checks passed.",
        "",
        *(["**The grid was cut short by the time budget (--budget-s).**", ""] if truncated
          else []),
        "Times are medians in ms over the whole sequence; ×cuDNN > 1 means rnnlab is faster "
        "(its fastest path; *auto* is the path rnnlab picks by itself, and its time). "
        "step µs is rnnlab's time per time step; GB/s and TFLOP/s are W_hh bytes and "
        "recurrent FLOPs per step divided by that step time (the roofline of the serial part).",
        "",
        "| cell | dtype | mode | B | H | T | rnnlab ms (path) | auto: path (ms) | cuDNN ms "
        "| ×cuDNN | FlashRNN ms | loop ms | ×loop | step µs | GB/s | TFLOP/s |",
        "|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ms = r["ms"]
        if "rnnlab_ms" not in r:
            continue

        def fmt(v, spec=".3f"):
            return format(v, spec) if v is not None else "–"

        lines.append(
            f"| {r['cell']} | {r['dtype']} | {r['mode']} | {r['B']} | {r['H']} | {r['T']} "
            f"| {r['rnnlab_ms']:.3f} ({r['rnnlab_best'].removeprefix('rnnlab_')}) "
            f"| {r['auto_path']} ({fmt(ms.get('rnnlab_' + r['auto_path']))}) "
            f"| {ms['cudnn']:.3f} | {r['speedup_vs_cudnn']:.2f} | {fmt(ms.get('flashrnn'))} "
            f"| {fmt(ms.get('torch_loop'), '.1f')} | {fmt(r['speedup_vs_loop'], '.0f')} "
            f"| {r['step_us']:.2f} | {r['weight_GBps_at_step']:.0f} "
            f"| {r['TFLOPs_at_step']:.2f} |"
        )
    lines += _new_cells_markdown(list(new_cells))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=16, H in {128, 1024}, T=256")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--B", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--H", nargs="+", type=int, default=[128, 512, 1024])
    parser.add_argument("--T", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--paths", nargs="+", default=TIMED_PATHS, choices=TIMED_PATHS,
                        help="rnnlab execution paths to time (the fastest is reported; the "
                        "cooperative kernel is also checked launched once per step)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="start no new configuration after this many seconds of timing")
    parser.add_argument("--loop-B", nargs="+", type=int, default=[16],
                        help="batch sizes at which the loop of torch ops is timed")
    parser.add_argument("--loop-T", nargs="+", type=int, default=[256])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-flashrnn", action="store_true")
    parser.add_argument("--new-size", nargs=3, type=int, default=[16, 256, 256],
                        metavar=("B", "H", "T"), help="size of the cells torch.nn lacks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true",
                        help="test this script on CPU through Triton's interpreter (tiny sizes, "
                        "TRITON_INTERPRET=1); its timings mean nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.B, args.H, args.T = [16], [128, 1024], [256]
    _fail_fast(args.smoke)
    global DEVICE
    check_sizes, check_T = (32, 256, 1024), 48
    if args.smoke:
        DEVICE = torch.device("cpu")
        # H = 16 takes the persistent path, H = 40 (blocks of 64) the cooperative one
        args.B, args.H, args.T, args.loop_B, args.loop_T = [2], [16, 40], [3], [2], [3]
        args.new_size = [2, 16, 5]
        args.warmup, args.reps, args.no_flashrnn = 0, 1, True
        args.paths = [p for p in args.paths if p != "graphs"]  # CUDA graphs need CUDA
        check_sizes, check_T = (8, 40), 4
    import triton

    meta = {
        "device": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu (smoke)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cudnn": torch.backends.cudnn.version() if DEVICE.type == "cuda" else None,
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                    time.gmtime()),
        "argv": sys.argv[1:],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    checks = check_correctness(args, check_sizes, check_T)
    failed = sorted({c["path"] for c in checks if not c["ok"]} - {"stepwise"})
    report = {"meta": meta, "correctness": checks, "failed_paths": failed, "results": [],
              "new_cells": []}
    args.paths = [p for p in args.paths if p not in failed]  # time only correct paths
    if failed:
        print(f"correctness FAILED for paths {failed}: they are not timed", file=sys.stderr)
    time_new_cells(args, report, lambda: _write(args.out, report))  # never timed on a GPU yet
    if args.paths:
        time_grid(args, report, lambda: _write(args.out, report))
    _write(args.out, report)
    print(f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'}")
    failed_cells = sorted({r["cell"] for r in report["new_cells"] if not r["ok"]})
    if failed_cells:
        print(f"correctness FAILED for {failed_cells}", file=sys.stderr)
    return 1 if failed or failed_cells else 0


def _write(out: Path, report: dict) -> None:
    """Write both files; called after every configuration so a cut-off run keeps its data."""
    (out / "gpu.json").write_text(json.dumps(report, indent=1))
    (out / "gpu.md").write_text(_markdown(report["meta"], report["correctness"],
                                          report["results"], report.get("truncated", False),
                                          report.get("new_cells", [])))


if __name__ == "__main__":
    sys.exit(main())
