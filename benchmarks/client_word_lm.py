"""A real client program, unmodified: PyTorch's word_language_model example trained with
torch.nn and with rnnlab.nn swapped in, over several seeds.

The example (https://github.com/pytorch/examples, ``word_language_model/``) is not part
of rnnlab: pass a checkout with ``--examples``. Each run executes its ``main.py`` as it
is, in a child process, after one swap that a user would make: ``torch.nn.RNN/LSTM/GRU``
(and the same names in ``torch.nn.modules.rnn``, which ``main.py`` lists as safe globals
for ``torch.load``) become rnnlab's layers. The corpus is a small split of the WikiText-2
files the checkout holds (``--train-words`` words of ``valid.txt`` for training, two
disjoint parts of ``test.txt`` for validation and test), so a run takes about a minute.

What it answers: is the mean test perplexity of rnnlab's layers within the seed spread
of torch.nn's (same program, same seeds)? And, since the same seed gives the same
initial weights and dropout masks in both, how far apart are the two after the first
logged batches (a difference from the very first batch would mean different masks or
state handling, not rounding)?

    python benchmarks/client_word_lm.py --examples ../examples --seeds 1 2 3 4 5 6

writes ``benchmarks/results/client_word_lm.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

# Executed as the child's program: the swap, then the example's main.py as __main__.
SWAP_AND_RUN = """
import os, runpy, sys
import torch.nn
impl = os.environ["CLIENT_IMPL"]
if impl != "torch":
    import rnnlab.nn
    for name in ("RNN", "LSTM", "GRU"):
        setattr(torch.nn, name, getattr(rnnlab.nn, name))
        setattr(torch.nn.modules.rnn, name, getattr(rnnlab.nn, name))
sys.argv = ["main.py", *sys.argv[1:]]
program = runpy.run_path("main.py", run_name="__main__")
print("recurrent layer:", type(program["model"].rnn).__module__)
"""

IMPLS = {  # name -> environment of the child
    "torch": {},
    "rnnlab-cpu": {"RNNLAB_BACKEND": "cpu"},
    "rnnlab-portable": {"RNNLAB_BACKEND": "portable"},
}

TEST_PPL = re.compile(r"End of training \| test loss\s+([\d.]+) \| test ppl\s+([\d.]+)")
VALID_PPL = re.compile(r"valid ppl\s+([\d.]+)")
BATCH_PPL = re.compile(r"\|\s+(\d+)/\s*\d+ batches .* ppl\s+([\d.]+)")


def _take_words(lines: list[str], n_words: int) -> tuple[list[str], list[str]]:
    """The first lines holding about ``n_words`` words, and the rest."""
    count = 0
    for k, line in enumerate(lines):
        if count >= n_words:
            return lines[:k], lines[k:]
        count += len(line.split())
    return lines, []


def make_corpus(wikitext: Path, out: Path, train_words: int, eval_words: int) -> dict:
    """train/valid/test.txt of the small split under ``out``; their word counts."""
    valid_lines = (wikitext / "valid.txt").read_text(encoding="utf-8").splitlines(True)
    test_lines = (wikitext / "test.txt").read_text(encoding="utf-8").splitlines(True)
    train, _ = _take_words(valid_lines, train_words)
    valid, rest = _take_words(test_lines, eval_words)
    test, _ = _take_words(rest, eval_words)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (out / f"{name}.txt").write_text("".join(lines), encoding="utf-8")
        sizes[name] = sum(len(line.split()) + 1 for line in lines)  # + <eos> per line
    return sizes


def run_once(example: Path, corpus: Path, impl: str, seed: int, args: list[str],
             work: Path) -> dict:
    env = {**os.environ, **IMPLS[impl], "CLIENT_IMPL": impl}
    save = work / f"model-{impl}-{seed}.pt"
    cmd = [sys.executable, "-c", SWAP_AND_RUN, "--data", str(corpus), "--seed", str(seed),
           "--save", str(save), *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=example, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{impl} seed {seed} failed:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    layer = re.search(r"recurrent layer: (\S+)", done.stdout)
    expected = "torch.nn" if impl == "torch" else "rnnlab.nn"
    if layer is None or not layer.group(1).startswith(expected):
        raise RuntimeError(f"{impl} seed {seed}: the model's recurrent layer came from "
                           f"{layer and layer.group(1)}, expected {expected}")
    test = TEST_PPL.search(done.stdout)
    if test is None:
        raise RuntimeError(f"{impl} seed {seed}: no test perplexity in\n{done.stdout[-3000:]}")
    return {
        "impl": impl, "seed": seed, "seconds": round(seconds, 1),
        "test_ppl": float(test.group(2)),
        "valid_ppl": [float(v) for v in VALID_PPL.findall(done.stdout)],
        "batch_ppl": {int(b): float(p) for b, p in BATCH_PPL.findall(done.stdout)},
    }


def summarise(runs: list[dict], impls: list[str]) -> dict:
    by_impl = {impl: [r for r in runs if r["impl"] == impl] for impl in impls}
    summary = {}
    for impl, rs in by_impl.items():
        ppl = [r["test_ppl"] for r in rs]
        summary[impl] = {
            "mean": statistics.fmean(ppl),
            "std": statistics.stdev(ppl) if len(ppl) > 1 else float("nan"),
            "min": min(ppl), "max": max(ppl), "seconds": statistics.median(
                r["seconds"] for r in rs),
        }
    torch_runs = {r["seed"]: r for r in by_impl.get("torch", [])}
    for impl, rs in by_impl.items():
        if impl == "torch" or not torch_runs:
            continue
        # Same seed, same program: relative perplexity difference at the first logged batch.
        first = []
        for r in rs:
            ref = torch_runs.get(r["seed"])
            if ref and r["batch_ppl"] and ref["batch_ppl"]:
                b = min(set(r["batch_ppl"]) & set(ref["batch_ppl"]))
                first.append(abs(r["batch_ppl"][b] / ref["batch_ppl"][b] - 1))
        summary[impl]["first_logged_batch_rel_diff_max"] = max(first) if first else None
        diffs = [r["test_ppl"] / torch_runs[r["seed"]]["test_ppl"] - 1 for r in rs
                 if r["seed"] in torch_runs]
        summary[impl]["paired_rel_diff_mean"] = statistics.fmean(diffs) if diffs else None
    return summary


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "client_word_lm.json").write_text(json.dumps(result, indent=1) + "\n")
    s = result["summary"]
    lines = [
        "# A real client: PyTorch's word_language_model, unmodified",
        "",
        f"{result['date']}, {result['machine']}, torch {result['torch']}. "
        f"Program arguments: `{' '.join(result['args'])}`; corpus (words incl. <eos>): "
        f"{result['corpus']}; seeds {result['seeds']}. Test perplexity after the run "
        "(lower is better).",
        "",
        "| implementation | mean | std over seeds | min | max | paired diff vs torch.nn "
        "(mean) | first logged batch, max rel diff | median s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for impl, v in s.items():
        paired = v.get("paired_rel_diff_mean")
        first = v.get("first_logged_batch_rel_diff_max")
        lines.append(
            f"| {impl} | {v['mean']:.2f} | {v['std']:.2f} | {v['min']:.2f} | {v['max']:.2f} "
            f"| {'—' if paired is None else f'{paired:+.2%}'} "
            f"| {'—' if first is None else f'{first:.1e}'} | {v['seconds']:.0f} |"
        )
    lines += ["", "Per run:", "", "| implementation | seed | test ppl | valid ppl by epoch |",
              "|---|---|---|---|"]
    for r in result["runs"]:
        valid = ", ".join(f"{v:.2f}" for v in r["valid_ppl"])
        lines.append(f"| {r['impl']} | {r['seed']} | {r['test_ppl']:.2f} | {valid} |")
    (RESULTS / "client_word_lm.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=Path, required=True,
                        help="a checkout of https://github.com/pytorch/examples")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--train-words", type=int, default=60_000)
    parser.add_argument("--eval-words", type=int, default=15_000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    example = args.examples / "word_language_model"
    wikitext = example / "data" / "wikitext-2"
    for needed in (example / "main.py", wikitext / "valid.txt", wikitext / "test.txt"):
        if not needed.is_file():
            parser.error(f"{needed} not found: --examples must be a pytorch/examples checkout")
    program_args = ["--epochs", str(args.epochs), "--log-interval", "10"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(wikitext, Path(tmp) / "corpus", args.train_words, args.eval_words)
        for seed in args.seeds:  # interleaved: machine drift hits every implementation alike
            for impl in args.impls:
                run = run_once(example, Path(tmp) / "corpus", impl, seed, program_args,
                               Path(tmp))
                print(f"{impl:16s} seed {seed}: test ppl {run['test_ppl']:.2f} "
                      f"({run['seconds']:.0f} s)", flush=True)
                runs.append(run)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": " ".join(filter(None, (platform.machine(), platform.processor(),
                                          f"{os.cpu_count()} cores"))),
        "torch": torch.__version__, "args": program_args, "corpus": corpus,
        "seeds": args.seeds, "runs": runs, "summary": summarise(runs, args.impls),
    }
    write(result)
    for impl, v in result["summary"].items():
        print(f"{impl:16s} mean {v['mean']:.2f} ± {v['std']:.2f}")


if __name__ == "__main__":
    main()
