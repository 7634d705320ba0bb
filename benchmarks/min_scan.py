"""minGRU/minLSTM training on the CPU: the parallel scan against the sequential form.

One layer (I = H), B = 16, H = 256, T ∈ {512, 4096}: a training step is the forward
pass and the backward of Σ g ⊙ y for a fixed random g. Three forms of the same layer are
timed interleaved in one process, median of the rounds: on the portable backend (torch
ops) ``parallel_scan=True``, the even-odd scan of ``rnnlab.scan``, and ``False``, the
loop over steps (forward and adjoint); and the cpu backend's compiled recurrence.
Peak memory of a step is measured in a fresh child process per (cell, T, form): the
peak resident set over the step (VmHWM, reset just before it) minus the resident set
before it, with the layer, input and g allocated and a step at T = 2 already run.
Also: the float32 error at T = 4096 of the scan, the loop and Heinsen's (2023) log-space
scan (logcumsumexp, b split by sign), each against the float64 loop, relative to the
largest |h|.

    python benchmarks/min_scan.py            # writes results/min-scan-avx2.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import rnnlab.nn as rnn
from rnnlab import use_backend
from rnnlab.scan import linear_scan

RESULTS = Path(__file__).resolve().parent / "results"
B, H = 16, 256
LENGTHS = (512, 4096)
ROUNDS = {512: 5, 4096: 3}
LAYERS = {"mingru": rnn.MinGRU, "minlstm": rnn.MinLSTM}
FORMS = {"scan": ("portable", True), "loop": ("portable", False), "compiled": ("cpu", True)}


def _setup(family: str, T: int, parallel: bool, dtype=torch.float32):
    torch.manual_seed(0)
    layer = LAYERS[family](H, H, parallel_scan=parallel, dtype=dtype)
    x = torch.randn(T, B, H, dtype=dtype)
    g = torch.randn(T, B, H, dtype=dtype)
    return layer, x, g


def _train_step(layer, x, g, backend: str) -> None:
    layer.zero_grad(set_to_none=True)
    with use_backend(backend):
        y, _ = layer(x)
        (y * g).sum().backward()


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmRSS: resident now, VmHWM: its peak), in bytes."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def measure_memory(family: str, T: int, form: str) -> int:
    """Peak bytes a training step adds: the resident peak over the step (reset just
    before it through /proc/self/clear_refs) minus the resident size before it."""
    backend, parallel = FORMS[form]
    _train_step(*_setup(family, 2, parallel), backend)  # first-call costs (op registration, ...)
    layer, x, g = _setup(family, T, parallel)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_bytes("VmRSS")
    _train_step(layer, x, g, backend)
    return _status_bytes("VmHWM") - before


def _memory_in_child(family: str, T: int, form: str) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--memory", family, str(T), form],
        check=True, capture_output=True, text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def time_forms(family: str, T: int) -> dict[str, list[float]]:
    """Seconds per training step of each form, interleaved round by round."""
    forms = {name: (*_setup(family, T, parallel), backend)
             for name, (backend, parallel) in FORMS.items()}
    times = {name: [] for name in forms}
    for args in forms.values():
        _train_step(*args)  # warm-up
    for _ in range(ROUNDS[T]):
        for name, args in forms.items():
            start = time.perf_counter()
            _train_step(*args)
            times[name].append(time.perf_counter() - start)
    return times


def _heinsen(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Log-space scan from h_{-1} = 0: h_t = e^{A_t} Σ_{s≤t} b_s e^{-A_s}, A = cumsum log a,
    the sum done by logcumsumexp on the positive and the negative parts of b."""
    a_star = torch.cumsum(torch.log(a), dim=0)
    parts = []
    for signed in (b, -b):
        log_b = torch.log(torch.clamp(signed, min=0))  # -inf where the part is absent
        parts.append(torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0)))
    return parts[0] - parts[1]


def float32_errors(T: int = 4096) -> dict[str, dict[str, float]]:
    """max |h - h_float64| / max |h_float64| of each scan form, per cell, on the layer's
    own (a, b) at T steps."""
    from rnnlab.backends._min import coefficients

    errors = {}
    for family in LAYERS:
        layer, x, _ = _setup(family, T, True, dtype=torch.float64)
        with torch.no_grad():
            u = torch.addmm(layer.bias_ih_l0, x.flatten(0, 1), layer.weight_ih_l0.T).view(
                *x.shape[:2], -1)
            a, b = coefficients(family, u)
            zeros = torch.zeros(B, H, dtype=torch.float64)
            exact = linear_scan(a, b, zeros, parallel=False)
            a32, b32, z32 = a.float(), b.float(), zeros.float()
            forms = {
                "parallel scan (even-odd)": linear_scan(a32, b32, z32, parallel=True),
                "sequential loop": linear_scan(a32, b32, z32, parallel=False),
                "log-space scan (Heinsen)": _heinsen(a32, b32),
            }
        scale = exact.abs().max().item()
        errors[family] = {
            name: (h.double() - exact).abs().max().item() / scale for name, h in forms.items()
        }
        errors[family]["-Σ_t log a_t (mean)"] = -torch.log(a).sum(0).mean().item()
    return errors


def run() -> dict:
    torch.set_num_threads(2)
    points = []
    for family in LAYERS:
        for T in LENGTHS:
            times = time_forms(family, T)
            median = {k: statistics.median(v) for k, v in times.items()}
            memory = {k: _memory_in_child(family, T, k) for k in FORMS}
            points.append({
                "cell": family, "T": T, "B": B, "H": H,
                **{f"{k}_ms": 1e3 * v for k, v in median.items()},
                "speedup": median["loop"] / median["scan"],
                "compiled_speedup": median["loop"] / median["compiled"],
                "spread": max(max(v) / min(v) for v in times.values()),
                **{f"{k}_peak_mb": v / 2**20 for k, v in memory.items()},
                "memory_ratio": memory["scan"] / memory["loop"],
                "compiled_memory_ratio": memory["compiled"] / memory["loop"],
            })
            print(points[-1], flush=True)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}"
                   f" with {torch.get_num_threads()} threads",
        "load_average": os.getloadavg(),
        "points": points,
        "float32_error_T4096": float32_errors(),
    }


def markdown(result: dict) -> str:
    lines = [
        "# minGRU / minLSTM training step: parallel scan vs sequential form, and the cpu "
        "backend's compiled recurrence (CPU)",
        "",
        f"{result['when']}; {result['machine']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in result['load_average'])} (a shared machine: "
        "read the ratios, not the times). One layer, I = H; a step = forward + backward; "
        "median of interleaved rounds; peak = the most memory a step adds (fresh process). "
        "scan and loop: torch ops (the portable backend); compiled: the cpu backend (its "
        "recurrence in one compiled loop; the default on CPU). Speed-ups are against the loop.",
        "",
        "| cell | T | B | H | scan ms | loop ms | compiled ms | scan speed-up "
        "| compiled speed-up | scan / loop / compiled peak MB | memory scan/loop |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['cell']} | {p['T']} | {p['B']} | {p['H']} | {p['scan_ms']:.1f} | "
            f"{p['loop_ms']:.1f} | {p['compiled_ms']:.1f} | {p['speedup']:.2f} | "
            f"{p['compiled_speedup']:.2f} | {p['scan_peak_mb']:.0f} / {p['loop_peak_mb']:.0f}"
            f" / {p['compiled_peak_mb']:.0f} | {p['memory_ratio']:.2f} |"
        )
    lines += ["", "float32 error of h at T = 4096 against the float64 loop "
              "(max |error| / max |h|):", "",
              "| cell | " + " | ".join(next(iter(result["float32_error_T4096"].values()))) + " |",
              "|---|" + "---|" * len(next(iter(result["float32_error_T4096"].values())))]
    for cell, errs in result["float32_error_T4096"].items():
        lines.append(f"| {cell} | " + " | ".join(f"{v:.2e}" if v < 1 else f"{v:.0f}"
                                                for v in errs.values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memory", nargs=3, metavar=("CELL", "T", "FORM"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--name", default="min-scan-avx2", help="results file stem")
    args = parser.parse_args()
    if args.memory:
        torch.set_num_threads(2)
        family, T, form = args.memory
        print(measure_memory(family, int(T), form))
        return
    result = run()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
