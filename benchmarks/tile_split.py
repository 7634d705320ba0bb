"""The per-step product's row split on the cpu backend's register tiles: even tiles
against one full tile after another and an overlapping last one.

``panel_matmul`` (``src/rnnlab/backends/cpu/_tile.py``) covers the M rows of a step
(the batch rows of one thread) with tiles of at most ``ROWS`` rows. Two ways of covering
them, each timed on the tiles of the kernel variant that runs here, interleaved, best of
the rounds (a peak: the machine is shared):

- ``even``: ⌈M / ROWS⌉ tiles of nearly equal size: the backend's own ``_panel``;
- ``overlap``: tiles of ``ROWS`` rows, the last one moved back to end at row M, so it
  recomputes rows of the one before (what the backend did before 2026-12-02).

Both sum every element in the same order; the script checks that they give the same
bits. GFLOP/s and their ratio per M, for the products of an LSTM step at
H ∈ {128, 192, 256} (K = H, N = 4H).

    python benchmarks/tile_split.py          # writes results/tile-split-<variant>.{json,md}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from cpu_speed import cpu_model, vector_features
from numba import njit

from rnnlab.backends.cpu import _isa
from rnnlab.backends.cpu._tile import _ROWS, LANES, _panel, _tile, pack_panels

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ((128, 512), (192, 768), (256, 1024))  # (K, N): LSTM, H = K
ROW_COUNTS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 20, 32)
ROUNDS = 7
SPLITS = ("overlap", "even")


@njit
def _overlap(isa, A, panels, C, p):
    """The split before 2026-12-02 (the even one is the backend's own ``_panel``)."""
    rows = _ROWS[isa]
    M = A.shape[0]
    if M < rows:
        _tile(isa, M, 1, A, panels, C, 0, p)
        return
    for m0 in range(0, M - rows + 1, rows):
        _tile(isa, rows, 1, A, panels, C, m0, p)
    if M % rows:
        _tile(isa, rows, 1, A, panels, C, M - rows, p)


@njit
def _product(split, isa, A, panels, C, repeats):
    """C = A · panels (N a multiple of 16), ``repeats`` times, with split 0 or 1."""
    for _ in range(repeats):
        for p in range(C.shape[1] // LANES):
            if split == 0:
                _overlap(isa, A, panels, C, p)
            else:
                _panel(isa, A, panels, C, p)


def run() -> dict:
    variant = _isa.active()
    rng = np.random.default_rng(0)
    points = []
    for K, N in SHAPES:
        panels = pack_panels(rng.standard_normal((N, K)).astype(np.float32), True)
        for M in ROW_COUNTS:
            A = rng.standard_normal((M, K)).astype(np.float32)
            out = [np.empty((M, N), dtype=np.float32) for _ in SPLITS]
            for s, C in enumerate(out):
                _product(s, variant.index, A, panels, C, 1)
            if not np.array_equal(*out):
                raise AssertionError(f"the splits differ at K={K} N={N} M={M}")
            flops = 2.0 * M * K * N
            repeats = max(1, int(2e8 / flops))
            best = [float("inf")] * len(SPLITS)
            for _ in range(ROUNDS):
                for s in range(len(SPLITS)):
                    start = time.perf_counter()
                    _product(s, variant.index, A, panels, out[s], repeats)
                    best[s] = min(best[s], (time.perf_counter() - start) / repeats)
            gflops = {name: flops / t / 1e9 for name, t in zip(SPLITS, best, strict=True)}
            points.append({"K": K, "N": N, "M": M, "rows_per_tile": _ROWS[variant.index],
                           **{f"{name}_gflops": g for name, g in gflops.items()},
                           "ratio": best[0] / best[1]})
            print(f"K={K:4d} N={N:5d} M={M:3d}: overlap {gflops['overlap']:6.1f}  "
                  f"even {gflops['even']:6.1f} GFLOP/s  ({points[-1]['ratio']:.2f}x)", flush=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {"cpu_model": cpu_model(), "vector_features": vector_features(),
                        "variant": variant.name}, "rounds": ROUNDS, "points": points}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Per-step product: even tiles vs an overlapping last tile (cpu backend)", "",
        f"{result['date']}; {m['cpu_model']} ({', '.join(m['vector_features'])}); kernel "
        f"variant **{m['variant']}**; best of {result['rounds']} interleaved rounds, one "
        "thread. Ratio = overlap time / even time (> 1: the even split is faster). Both give "
        "the same bits.", "",
        "| K | N | M | overlap GFLOP/s | even GFLOP/s | ratio |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {p['K']} | {p['N']} | {p['M']} | {p['overlap_gflops']:.1f} | "
              f"{p['even_gflops']:.1f} | {p['ratio']:.2f} |" for p in result["points"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    result = run()
    name = f"tile-split-{result['machine']['variant']}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    print(f"wrote {args.out / name}.json and .md")


if __name__ == "__main__":
    main()
