"""Which cell learns what: a fixed recipe per task, RNN / LSTM / GRU, next to the chance or
classical baseline and the published figure where one exists for a comparable setting.

    .venv/bin/python benchmarks/learning.py --jobs 2  # the full recipe (caps: <= 51 min)
    .venv/bin/python benchmarks/learning.py --quick   # a smoke test of every row

Every row is one ``rnnlab.compare`` of the three cells (parameter-matched, same data,
seed and budget): adding at T = 100 and 600, copy with delays 50 and 200, parity (trained
on up to 16 bits, scored on 64), sequential 8×8 digits, charlm on the default corpus, and
the AirPassengers and sunspots (season 11, the solar cycle) forecasts with their classical
baselines. Each run stops at its step budget or its wall-clock cap (``seconds``),
whichever comes first, so the whole benchmark fits an hour of two CPU cores. With
``--jobs 2`` two rows train at once, each in its own process on one thread, so a cell
still has a whole core for its cap (the machine must be otherwise quiet: the caps are
wall time).

Published figures, cited where the setting is comparable:

* Bai, Kolter & Koltun (2018), "An Empirical Evaluation of Generic Convolutional and
  Recurrent Networks for Sequence Modeling", Table 1: adding problem T = 600, test MSE
  LSTM 0.164, GRU 5.3e-5, RNN 0.177 (their sizes and budget, not ours).
* Darts' LSTM (``RNNModel``) on AirPassengers, 6-month forecasts backtested from
  January 1959: MAPE 2.71 % (Darts' recurrent-model example). Ours: 6-row forecasts at
  origins 1959-01, -07, 1960-01, -07 from 12 rows of context; MAPE over those 24 months.

Writes benchmarks/results/learning.{json,md} (``--quick``: learning-quick.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from rnnlab.compare import CompareConfig, compare
from rnnlab.tasks import CLASSIC_CELLS as CELLS  # the table shows RNN, LSTM and GRU
from rnnlab.training import TrainConfig

RESULTS = Path(__file__).parent / "results"
BAI = "Bai et al. 2018, Table 1 (T = 600)"
DARTS = "Darts LSTM, 6-month backtest from 1959: MAPE 2.71 %"

# name, task, task options, training settings, published {cell: value} and its source
RECIPES = [
    ("adding T=100", "adding", {"length": 100}, {"steps": 3000, "seconds": 90}, None),
    ("adding T=600", "adding", {"length": 600}, {"steps": 6000, "seconds": 600},
     ({"rnn": 0.177, "lstm": 0.164, "gru": 5.3e-5}, BAI)),
    # copy: a wider layer (the GRU 130 units) and a larger, annealed step than the task's
    # defaults; with lr 3e-3 the GRU's recall crept up for 12 000 steps without solving it
    ("copy delay 50", "copy", {"delay": 50},
     {"steps": 2500, "seconds": 150, "hidden": 112, "lr": 1e-2, "schedule": "cosine"}, None),
    ("copy delay 200", "copy", {"delay": 200},
     {"steps": 5000, "seconds": 800, "hidden": 112, "lr": 1e-2, "schedule": "cosine"}, None),
    ("parity 16 -> 64", "parity", {"train_length": 16, "val_length": 64},
     {"steps": 2000, "seconds": 90}, None),
    ("digits (sequential 8x8)", "classify", {"path": "digits"}, {"steps": 1500, "seconds": 90},
     None),
    ("charlm (stdlib corpus)", "charlm", {}, {"steps": 1500, "seconds": 120}, None),
    # its defaults are Darts' protocol; the log and the change from the window's last row
    # let a model follow a level and a season that grow beyond the training rows
    ("airpassengers", "forecast", {"path": "airpassengers", "transform": "log",
                                   "target": "change"},
     {"steps": 1500, "seconds": 40, "batch_size": 32}, ({}, DARTS)),
    ("sunspots", "forecast", {"path": "sunspots", "window": 22, "horizon": 11, "season": 11,
                              "target": "change"},
     {"steps": 1500, "seconds": 40}, None),
]

QUICK = {"adding T=100": {"length": 20, "val_size": 64},
         "adding T=600": {"length": 30, "val_size": 64},
         "copy delay 50": {"delay": 10, "val_size": 64},
         "copy delay 200": {"delay": 20, "val_size": 64},
         "parity 16 -> 64": {"train_length": 6, "val_length": 12, "val_size": 64},
         "charlm (stdlib corpus)": {"max_chars": 20000}}


def run_row(recipe, quick: bool, folder: Path) -> dict:
    name, task, options, settings, published = recipe
    options = {**options, **(QUICK.get(name, {}) if quick else {})}
    settings = {**settings, **({"steps": 10, "seconds": 20, "eval_every": 5} if quick else {})}
    train = TrainConfig.for_task(task, task_options=options, **settings)
    start = time.perf_counter()
    result = compare(CompareConfig(train=train, cells=CELLS), folder, progress="none",
                     report=task == "forecast")
    m = result.metrics
    row = {"name": name, "task": task, "task_options": options, "metric": m["metric"],
           "higher_is_better": m["higher_is_better"], "chance": m["chance"],
           "baseline": m["baseline"], "seconds": time.perf_counter() - start,
           "training": settings,
           "cells": {c["cell"]: {"best": c["best"], "hidden": c["hidden"],
                                 "params": c["params"], "seconds": c["seconds"],
                                 "steps": c["runs"][0]["steps"]} for c in m["cells"]}}
    if published and not quick:  # tiny quick sizes are not the published setting
        row["published"], row["source"] = published
    if task == "forecast":
        views = {c: e["forecast_view"] for c, e in m["extras"].items()}
        for cell, view in views.items():
            row["cells"][cell].update(view["scores"])  # MAE, RMSE, MAPE, sMAPE, MASE
        first = next(iter(views.values()))
        row["baselines"] = {n: b["scores"] for n, b in first["baselines"].items()}
    return row


def _run_row_alone(recipe, quick: bool, folder: Path) -> dict:
    """One row in a worker process, on one torch thread (the rows beside it have the
    other cores)."""
    torch.set_num_threads(1)
    return run_row(recipe, quick, folder)


def _g(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def markdown(report: dict) -> str:
    quick = report["quick"]
    title = " — QUICK smoke test (tiny sizes; not results)" if quick else ""
    lines = [f"# Learning benchmark{title}",
             "", f"Machine: {report['machine']}; torch {report['torch']}; "
             f"{report['seconds'] / 60:.1f} min in all. `benchmarks/learning.py`"
             f"{' --quick' if quick else ''}."
             + (f" Rows rerun since with `--only` (their new recipe): "
                f"{', '.join(report['rerun'])}." if report.get("rerun") else ""), "",
             "| task | setting | metric | chance / baseline | RNN | LSTM | GRU "
             "| train s (3 cells) | published |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        cells = row["cells"]
        base = f"{_g(row['chance'])} ({row['baseline']})"
        if "baselines" in row:
            scored = {n: s for n, s in row["baselines"].items() if s}
            best = min(scored, key=lambda n: scored[n]["mase"]) if scored else None
            base = (f"{best}: MASE {_g(scored[best]['mase'])}, MAPE "
                    f"{_g(scored[best]['mape'])} %") if best else "all baselines failed"
            shown = [f"MASE {_g(cells[c]['mase'])}, MAPE {_g(cells[c]['mape'])} %"
                     for c in CELLS]
        else:
            shown = [_g(cells[c]["best"]) for c in CELLS]
        pub = ""
        if "published" in row:
            pub = " / ".join(f"{c.upper()} {_g(v)}" for c, v in row["published"].items())
            pub = f"{pub} ({row['source']})" if pub else row["source"]
        train_s = sum(c["seconds"] for c in cells.values())
        recipe = {k: v for k, v in row.get("training", {}).items()
                  if k not in ("steps", "seconds", "eval_every")}
        setting = ", ".join([*(f"{k}={v}" for k, v in row["task_options"].items()
                               if k != "val_size"), *(f"{k}={v}" for k, v in recipe.items())])
        counts = [cells[c]["steps"] for c in CELLS]  # fewer than the budget: the time cap
        steps = (f"{counts[0]} steps" if len(set(counts)) == 1 else
                 "steps " + "/".join(map(str, counts)))
        lines.append(f"| {row['name']} | {setting}; {steps} | {row['metric']} | {base} | "
                     + " | ".join(shown)
                     + f" | {train_s:.0f} | {pub} |")
    lines += ["", "Steps: each cell's (RNN/LSTM/GRU where they differ); a run stops at its "
              "step budget or its time cap, whichever comes first. Settings after the task's "
              "options are the row's training recipe (hidden: the LSTM's width, the others "
              "matched to its parameter count).",
              "", "Forecast rows: MASE and MAPE of the backtest in data units; the baseline "
              "column names the best classical forecaster by MASE (a baseline below a cell's "
              "MASE beats it)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--only", help="run only the rows whose name contains one of these "
                        "comma-separated texts; without --quick they replace those rows of "
                        "the saved results")
    parser.add_argument("--jobs", type=int, default=1,
                        help="rows trained at once, each in its own process on one thread "
                        "(2 on two cores: every cell still has a core for its time cap)")
    args = parser.parse_args()
    wanted = args.only.split(",") if args.only else [""]
    recipes = [r for r in RECIPES if any(text in r[0] for text in wanted)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        # the longest rows first, so that the others fill the time beside them
        longest_first = sorted(range(len(recipes)), key=lambda k: -recipes[k][3]["seconds"])
        futures = {k: pool.submit(_run_row_alone, recipes[k], args.quick, Path(tmp) / f"row{k}")
                   for k in longest_first}
        rows = []
        for k, recipe in enumerate(recipes):
            rows.append(futures[k].result())
            print(f"{recipe[0]}: {rows[-1]['seconds']:.0f} s", flush=True)
    wall = time.perf_counter() - start
    name = "learning-quick" if args.quick else "learning"
    saved = RESULTS / f"{name}.json"
    report = {"quick": args.quick, "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {args.jobs} row(s) at once on one thread each",
              "torch": torch.__version__, "seconds": wall, "rows": rows,
              "load_average_end": os.getloadavg(), "rerun": []}
    if args.only and not args.quick and saved.is_file():  # rerun rows replace their old ones
        before = json.loads(saved.read_text())
        new = {row["name"]: row for row in rows}
        rows = [new.pop(row["name"], row) for row in before["rows"]] + list(new.values())
        report = {**before, "rows": rows,
                  "rerun": [*before.get("rerun", []), *(r[0] for r in recipes)]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
