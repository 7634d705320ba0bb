"""Layer-normalised LSTM/GRU on the CPU: rnnlab's layer against the common user solution.

The user solution is what one writes without a fused layer (torch.nn has no LayerNorm
LSTM or GRU): a Python loop over time steps of ``nn.Linear`` projections and
``nn.LayerNorm`` modules around the gate math, the same function as rnnlab's
``LSTM(layer_norm=True)`` / ``GRU(layer_norm=True)`` (Haste's form; checked equal on the
first 20 steps before timing). rnnlab runs on its cpu backend (the compiled kernels of
``backends/cpu/ln{lstm,gru}.py``); with ``--compile`` the loop also runs with its step
function through ``torch.compile`` (default mode, static shapes: one graph per shape, so
compilation does not grow with T, where compiling the whole loop would unroll it), the
first call (the compilation) timed apart.

One layer, float32, ``--threads`` torch threads (2 by default; on a loaded machine 1,
as cpu_speed.py does there: torch's per-op parallel regions stall under load);
inference (``torch.no_grad``) and a training step (forward + backward of Σ g ⊙ y); the
implementations interleaved per round, median of the rounds. Grid: the first three
points of ``benchmarks/cpu_speed.py``.

    python benchmarks/layer_norm.py --compile --threads 1 --rounds 3
                                                # writes results/layer-norm-avx2.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import rnnlab
import rnnlab.nn as rnn

RESULTS = Path(__file__).resolve().parent / "results"
GRID = (  # (name, B, T, I, H): cpu_speed.py's first three points
    ("B1 T1000 I64 H128", 1, 1000, 64, 128),
    ("B16 T200 I128 H256", 16, 200, 128, 256),
    ("B64 T100 I256 H512", 64, 100, 256, 512),
)
ROUNDS = 5
TARGET = 5.0  # issue #17: rnnlab ≥ 5× the loop, inference and training


class LoopLayerNormLSTM(nn.Module):
    """The common user solution: Linear + LayerNorm modules, a Python loop over steps
    (the input side, which needs no loop, projected and normalised for all steps at once)."""

    def __init__(self, I: int, H: int):
        super().__init__()
        self.ih, self.hh = nn.Linear(I, 4 * H, bias=False), nn.Linear(H, 4 * H, bias=False)
        self.ln_ih = nn.LayerNorm(4 * H, bias=False)
        self.ln_hh = nn.LayerNorm(4 * H)  # its β is the gates' bias
        self.ln_c = nn.LayerNorm(H)

        self.step_fn = self.step  # what the loop calls: this, or torch.compile of it

    def step(self, u, h, c):
        a = u + self.ln_hh(self.hh(h))
        i, f, g, o = a.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln_c(c)), c

    def forward(self, x):
        B, H = x.shape[1], self.ln_c.normalized_shape[0]
        h = c = x.new_zeros(B, H)
        u_all = self.ln_ih(self.ih(x))  # the input side for all steps at once
        ys = []
        for u in u_all:
            h, c = self.step_fn(u, h, c)
            ys.append(h)
        return torch.stack(ys)


class LoopLayerNormGRU(nn.Module):
    """The GRU counterpart of :class:`LoopLayerNormLSTM`."""

    def __init__(self, I: int, H: int):
        super().__init__()
        self.ih, self.hh = nn.Linear(I, 3 * H, bias=False), nn.Linear(H, 3 * H, bias=False)
        self.ln_ih, self.ln_hh = nn.LayerNorm(3 * H), nn.LayerNorm(3 * H)
        self.H = H
        self.step_fn = self.step

    def step(self, u, h):
        H = self.H
        v = self.ln_hh(self.hh(h))
        r, z = torch.sigmoid(u[:, : 2 * H] + v[:, : 2 * H]).chunk(2, dim=1)
        n = torch.tanh(u[:, 2 * H :] + r * v[:, 2 * H :])
        return n + z * (h - n)

    def forward(self, x):
        h = x.new_zeros(x.shape[1], self.H)
        u_all = self.ln_ih(self.ih(x))
        ys = []
        for u in u_all:
            h = self.step_fn(u, h)
            ys.append(h)
        return torch.stack(ys)


def _pair(cell: str, I: int, H: int):
    """rnnlab's layer and the loop with the same weights."""
    torch.manual_seed(0)
    if cell == "lnlstm":
        ours, loop = rnn.LSTM(I, H, layer_norm=True), LoopLayerNormLSTM(I, H)
        copies = {"ih.weight": "weight_ih_l0", "ln_ih.weight": "gamma_ih_l0",
                  "ln_hh.weight": "gamma_hh_l0", "ln_c.weight": "gamma_c_l0",
                  "ln_c.bias": "beta_c_l0"}
        with torch.no_grad():
            loop.ln_hh.bias.copy_(ours.bias_ih_l0 + ours.bias_hh_l0)
    else:
        ours, loop = rnn.GRU(I, H, layer_norm=True), LoopLayerNormGRU(I, H)
        copies = {"ih.weight": "weight_ih_l0", "ln_ih.weight": "gamma_ih_l0",
                  "ln_ih.bias": "bias_ih_l0", "ln_hh.weight": "gamma_hh_l0",
                  "ln_hh.bias": "bias_hh_l0"}
    copies["hh.weight"] = "weight_hh_l0"
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.startswith(("gamma", "beta")):
                p.add_(0.1 * torch.randn_like(p))
        for theirs, mine in copies.items():
            loop.get_parameter(theirs).copy_(getattr(ours, mine))
    return ours, loop


def _run(layer, x, g, train: bool) -> None:
    if not train:
        with torch.no_grad():
            layer(x)
        return
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    (y[0] if isinstance(y, tuple) else y).mul(g).sum().backward()


def measure(cell: str, B: int, T: int, I: int, H: int, compile_step: bool, rounds: int) -> dict:
    ours, loop = _pair(cell, I, H)
    x, g = torch.randn(T, B, I), torch.randn(T, B, H)
    with torch.no_grad():  # the first 20 steps: over hundreds, these random weights'
        # chaotic recurrence amplifies float32 rounding into O(1) differences
        error = (ours(x[:20])[0] - loop(x[:20])).abs().max().item()
    assert error < 1e-4, f"{cell}: the loop and rnnlab differ by {error}"
    out = {"max_abs_difference": error}
    layers = {"rnnlab": ours, "loop": loop}
    if compile_step:  # the same loop, its step compiled (one graph, whatever T is)
        compiled = copy.copy(loop)  # shares the parameters
        compiled.step_fn = torch.compile(loop.step, dynamic=False)
        layers["compiled"] = compiled
    for mode in ("inference", "training"):
        train = mode == "training"
        times: dict[str, list[float]] = {name: [] for name in layers}
        row: dict[str, float] = {}
        for name, layer in layers.items():  # warm up (the compiled loop: its compilation)
            start = time.perf_counter()
            _run(layer, x, g, train)
            if name == "compiled":
                row["compile_s"] = time.perf_counter() - start
        for _ in range(rounds):
            for name, layer in layers.items():
                start = time.perf_counter()
                _run(layer, x, g, train)
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(t) for name, t in times.items()}
        row.update({f"{name}_ms": 1e3 * t for name, t in median.items()})
        row["speedup"] = median["loop"] / median["rnnlab"]
        if compile_step:
            row["speedup_vs_compiled"] = median["compiled"] / median["rnnlab"]
        out[mode] = row
    return out


def run(compile_step: bool, threads: int, rounds: int) -> dict:
    torch.set_num_threads(threads)
    started_load = os.getloadavg()
    points = []
    with rnnlab.use_backend("cpu"):
        for name, B, T, I, H in GRID:
            for cell in ("lnlstm", "lngru"):
                result = measure(cell, B, T, I, H, compile_step, rounds)
                points.append({"config": name, "cell": cell, **result})
                print(points[-1], flush=True)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}"
                   f" with {torch.get_num_threads()} threads",
        "load_average_start": started_load,
        "load_average": os.getloadavg(),
        "compile_step": compile_step,
        "rounds": rounds,
        "points": points,
    }


def _ms(row: dict, name: str) -> str:
    return f"{row[name]:.1f}" if name in row else "—"


def markdown(result: dict) -> str:
    start, end = (", ".join(f"{v:.1f}" for v in result[k])
                  for k in ("load_average_start", "load_average"))
    lines = [
        "# Layer-normalised LSTM / GRU (CPU): rnnlab vs a Python loop of nn.Linear + nn.LayerNorm",
        "",
        f"{result['when']}; {result['machine']}; load average at the start {start}, at the "
        f"end {end} (a shared machine: read the ratios, not the times). One layer, float32; "
        "rnnlab on its cpu backend (compiled kernels). Speed-up = loop time / rnnlab time "
        f"(median of {result['rounds']} interleaved rounds; target ≥ {TARGET:g}×); "
        "\"vs compiled\" = the same loop with its step function through torch.compile "
        "(static shapes), its time / rnnlab time, its compilation (first call) in its own "
        "column (— : not run).",
        "",
        "| config | cell | mode | rnnlab ms | loop ms | speed-up | compiled loop ms "
        "| vs compiled | compilation s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        for mode in ("inference", "training"):
            row = p[mode]
            versus = f"{row['speedup_vs_compiled']:.2f}" if "speedup_vs_compiled" in row else "—"
            compile_s = f"{row['compile_s']:.0f}" if "compile_s" in row else "—"
            lines.append(
                f"| {p['config']} | {p['cell']} | {mode} | {row['rnnlab_ms']:.1f} | "
                f"{row['loop_ms']:.1f} | {row['speedup']:.2f} | {_ms(row, 'compiled_ms')} | "
                f"{versus} | {compile_s} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "layer-norm-avx2"),
                        help="results path without extension (.json and .md are written)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the loop with its step through torch.compile")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both sides)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds per point")
    args = parser.parse_args()
    out = Path(args.out)
    result = run(args.compile, args.threads, args.rounds)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
