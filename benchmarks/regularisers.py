"""The regularisers' cost: a training step of an LSTM/GRU layer with each option on,
against the same plain layer (the fused op of the default backend), on the CPU.

One layer, float32, B = 16, T = 100, I = H ∈ {64, 256}; a training step is the forward
pass and the backward of Σ g ⊙ y for a fixed random g. Each option (weight_drop=0.3,
recurrent_dropout=0.3, zoneout=0.1) and the plain layer are timed interleaved in one
process, median of the rounds; the table gives ms per step and the ratio to plain
(issue #17's target: ≤ 1.3×). Recurrent dropout and zoneout run the masked ops, on the
cpu backend's fused kernels (backends/cpu/masked_lstm.py, masked_gru.py); their ratio
includes drawing the masks (zoneout: a (T, B, H) Bernoulli draw per state).

    python benchmarks/regularisers.py            # writes results/regularisers.{json,md}
    python benchmarks/regularisers.py --quick    # H = 64 only, fewer rounds, no files
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import rnnlab.nn as rnn

RESULTS = Path(__file__).resolve().parent / "results"
B, T = 16, 100
OPTIONS = {
    "plain": {},
    "weight_drop": {"weight_drop": 0.3},
    "recurrent_dropout": {"recurrent_dropout": 0.3},
    "zoneout": {"zoneout": 0.1},
}
LAYERS = {"lstm": rnn.LSTM, "gru": rnn.GRU}


def _step(layer, x, g) -> None:
    layer.zero_grad(set_to_none=True)
    y, _ = layer(x)
    (y * g).sum().backward()


def measure(family: str, H: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median seconds per training step of each option, timed interleaved: (wall clock,
    CPU time of the calling thread). With one thread everything runs on the calling
    thread, and its CPU time stays meaningful on a loaded machine, where wall time also
    counts the time other processes held the core."""
    torch.manual_seed(0)
    x, g = torch.randn(T, B, H), torch.randn(T, B, H)
    layers = {}
    for name, options in OPTIONS.items():
        torch.manual_seed(0)
        layers[name] = LAYERS[family](H, H, **options)
        _step(layers[name], x, g)  # warm-up (compilation, caches)
    wall = {name: [] for name in OPTIONS}
    cpu = {name: [] for name in OPTIONS}
    for _ in range(rounds):
        for name, layer in layers.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            _step(layer, x, g)
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]))
            for name in OPTIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H = 64, 3 rounds, no files")
    args = parser.parse_args()
    sizes, rounds = ((64,), 3) if args.quick else ((64, 256), 21)
    load_start = round(os.getloadavg()[0], 1)
    rows = []
    for family in LAYERS:
        for H in sizes:
            seconds = measure(family, H, rounds)
            plain, plain_cpu = seconds["plain"]
            for name, (value, value_cpu) in seconds.items():
                rows.append({"cell": family, "H": H, "option": name, "ms": 1e3 * value,
                             "ratio": value / plain, "cpu_ms": 1e3 * value_cpu,
                             "cpu_ratio": value_cpu / plain_cpu})
                print(f"{family:4s} H={H:<4d} {name:18s} {1e3 * value:8.2f} ms "
                      f"{value / plain:5.2f}x   cpu {1e3 * value_cpu:8.2f} ms "
                      f"{value_cpu / plain_cpu:5.2f}x", flush=True)
    if args.quick:
        return
    meta = {"B": B, "T": T, "dtype": "float32", "threads": torch.get_num_threads(),
            "load_average_start": load_start, "load_average": round(os.getloadavg()[0], 1),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "regularisers.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                          indent=1) + "\n")
    lines = [
        f"# Regularisers vs the plain layer (training step, B = {B}, T = {T}, float32, "
        f"{meta['threads']} threads, load average {load_start} at the start and "
        f"{meta['load_average']} at the end, median of {rounds} interleaved rounds)", "",
        "Wall clock, and the CPU time of the calling thread (with one thread all the work "
        "runs there; on a loaded machine it leaves out the time other processes held the "
        "core).", "",
        "| cell | H | option | ms / step | × plain | CPU ms / step | × plain (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['cell']} | {r['H']} | {r['option']} | {r['ms']:.2f} | {r['ratio']:.2f} | "
              f"{r['cpu_ms']:.2f} | {r['cpu_ratio']:.2f} |" for r in rows]
    (RESULTS / "regularisers.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
