"""Do the regularisers pay off? A character LSTM large enough to overfit its text, trained
with and without weight-drop + variational (recurrent) dropout, same budget, held-out bpc.

Issue #17's learning target: on charlm, weight-drop (DropConnect on W_hh, Merity et al.
2018) together with variational dropout on h_{t-1} (Gal & Ghahramani 2016) reach a lower
held-out bpc than no regularisation. Both runs train the same LSTM (same seed, data order,
step budget and cosine schedule; the budget is in steps, so the machine's load changes the
time, not the result) on the built-in corpus, and are scored on its held-out tail every
``eval_every`` steps. The table gives the best and the final held-out bpc, and the
training loss at the end in bits per character (the gap between the two is overfitting).
The text is the corpus's first 60 000 characters, which this LSTM (hidden 384, 0.73 M
parameters) overfits within the budget; on the whole corpus (1 M characters) it was still
improving after 1500 steps, where no regulariser can help.

    python benchmarks/charlm_regularisers.py           # writes results/charlm-regularisers.*
    python benchmarks/charlm_regularisers.py --quick   # a smoke test, no files
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from rnnlab.training import train

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"none": {}, "weight_drop + recurrent_dropout": {"weight_drop": 0.3,
                                                            "recurrent_dropout": 0.25}}


def run(name: str, options: dict, args, folder: Path) -> dict:
    result = train(task="charlm", cell="lstm", hidden=args.hidden, steps=args.steps,
                   eval_every=args.eval_every, checkpoint_every=args.steps, seed=0,
                   task_options={"max_chars": args.max_chars}, progress="none",
                   run_dir=folder, **options)
    history = [{"step": r["step"], "val_bpc": r["val"], "train_bpc": r["loss"] / math.log(2)}
               for r in result.history]
    return {"setting": name, "options": options, "params": result.params,
            "best": result.best, "best_step": result.best_step, "final": result.final,
            "train_bpc_final": history[-1]["train_bpc"], "seconds": result.seconds,
            "history": history}


def markdown(report: dict) -> str:
    a = report["args"]
    lines = ["# Regularisers on charlm: held-out bpc, same budget", "",
             f"{report['date']}; {report['machine']}; torch {report['torch']}. "
             f"LSTM, hidden {a['hidden']}, one layer, {a['steps']} steps of 32 × 100 "
             f"characters, cosine schedule, seed 0, on the first {a['max_chars']:,} characters "
             "of the built-in corpus (the last 5 % held out). "
             "`benchmarks/charlm_regularisers.py`.",
             "", "| setting | parameters | best held-out bpc (step) | final held-out bpc "
             "| final training loss, bpc | minutes |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['setting']} | {r['params']:,} | {r['best']:.3f} ({r['best_step']}) "
                     f"| {r['final']:.3f} | {r['train_bpc_final']:.3f} | {r['seconds'] / 60:.1f} |")
    steps = [h["step"] for h in report["rows"][0]["history"]]
    lines += ["", "Held-out bpc at each evaluation:", "",
              "| step | " + " | ".join(r["setting"] for r in report["rows"]) + " |",
              "|---|" + "---|" * len(report["rows"])]
    for k, step in enumerate(steps):
        lines.append(f"| {step} | " + " | ".join(f"{r['history'][k]['val_bpc']:.3f}"
                                                 for r in report["rows"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--max-chars", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no files written")
    args = parser.parse_args()
    if args.quick:
        args.hidden, args.steps, args.eval_every, args.max_chars = 32, 20, 10, 20_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, options) in enumerate(SETTINGS.items()):
            rows.append(run(name, options, args, Path(tmp) / f"run{k}"))
            print(f"{name}: best {rows[-1]['best']:.3f}, final {rows[-1]['final']:.3f}",
                  flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"{torch.get_num_threads()} torch threads, load at the end "
              f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}",
              "torch": torch.__version__, "args": vars(args), "rows": rows}
    text = markdown(report)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "charlm-regularisers.json").write_text(json.dumps(report, indent=1) + "\n")
        (RESULTS / "charlm-regularisers.md").write_text(text)


if __name__ == "__main__":
    main()
