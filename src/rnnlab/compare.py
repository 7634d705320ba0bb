"""A fair RNN-vs-LSTM-vs-GRU comparison: same data, seeds, optimiser and budget per cell.

Sizes are matched by parameter count unless a width is fixed. Each (cell, seed) is an
ordinary training run in a subfolder of the comparison's run folder; the comparison adds
``metrics.json`` (the aggregate, from which the report is redrawn), the PNGs and one
self-contained ``report.html``.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rnnlab._io import RUN_MARKER, InputError, prepare_run_dir, read_json, write_json
from rnnlab._version import __version__
from rnnlab.runs import check_compare_resume, holds_run, read_compare_config
from rnnlab.tasks import CELLS, CLASSIC_CELLS, Task, get_task, match_hidden
from rnnlab.tasks.model import (
    REGULARISERS,
    UNREGULARISED,
    check_regularisers,
    without_unused_regularisers,
)
from rnnlab.training import TrainConfig, TrainResult, train
from rnnlab.training.distributed import world
from rnnlab.training.threads import thread_policy

# The built-in default: the adding problem at T = 60, where a plain RNN stays at chance
# while LSTM and GRU solve it. Measured on 2 CPU cores (seeds 0-3): LSTM (forget bias 1)
# reaches 10 % of chance in 1000-1300 steps, GRU in 400-500, the RNN stays at ~1.05 × chance;
# 2500 steps take about 2 minutes for the three cells.
DEFAULT_TRAIN = TrainConfig.for_task("adding", task_options={"length": 60})


@dataclass(frozen=True)
class CompareConfig:
    """Which cells, how many seeds, and how to size them; ``train`` holds everything shared.

    ``hidden`` fixes one width for every cell; otherwise each cell's width is chosen so
    its parameter count is closest to ``params`` (default: that of an LSTM at the task's
    default width).
    """

    train: TrainConfig = field(default_factory=lambda: DEFAULT_TRAIN)
    cells: tuple[str, ...] = CLASSIC_CELLS
    seeds: int = 1
    hidden: int | None = None
    params: int | None = None

    def __post_init__(self):
        if not isinstance(self.train, TrainConfig):
            raise InputError("train must be a TrainConfig")
        cells = tuple(self.cells)
        object.__setattr__(self, "cells", cells)
        if not cells:
            raise InputError(f"cells is empty; expected some of {', '.join(CELLS)}")
        for c in cells:
            if c not in CELLS:
                raise InputError(f"unknown cell {c!r}; expected some of {', '.join(CELLS)}")
            if c not in UNREGULARISED:  # those train without them (see cell_config)
                check_regularisers(c, self.train.weight_drop, self.train.recurrent_dropout,
                                   self.train.zoneout)
        if len(set(cells)) != len(cells):
            raise InputError(f"cells lists a cell twice: {','.join(cells)}")
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise InputError(f"seeds must be an integer >= 1, got {self.seeds!r}")
        if self.hidden is not None and self.params is not None:
            raise InputError("give either hidden (one width for all) or params (matched), not both")
        for name in ("hidden", "params"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InputError(f"{name} must be a positive integer, got {v!r}")

    def to_dict(self) -> dict:
        """The configuration as JSON types (what ``compare.json`` holds)."""
        d = asdict(self)
        d["cells"] = list(self.cells)
        return d

    @classmethod
    def from_options(cls, **options) -> CompareConfig:
        """Build from flat keyword options: this class's fields and TrainConfig's.

        Training options start from the task's own defaults (``Task.train_defaults``).
        """
        own = {k: options.pop(k) for k in ("cells", "seeds", "hidden", "params") if k in options}
        train_fields = {f.name for f in fields(TrainConfig)} - {"cell"}
        unknown = sorted(set(options) - train_fields)
        if unknown:
            raise InputError(f"compare has no option {unknown[0]!r} (cells are chosen by 'cells')")
        task = options.pop("task", "adding")
        base = DEFAULT_TRAIN if task == "adding" else TrainConfig.for_task(task)
        return cls(train=base.replace(**options), **own)

    @classmethod
    def from_dict(cls, d: dict) -> CompareConfig:
        """The configuration :meth:`to_dict` wrote; an unknown or missing field is an
        :class:`~rnnlab._io.InputError`."""
        if not isinstance(d, dict):
            raise InputError(f"a compare configuration is a JSON object, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown compare field {unknown[0]!r}; expected {', '.join(names)}")
        if "train" not in d:
            raise InputError("the compare field 'train' is missing")
        d = {**d, "train": TrainConfig.from_dict(d["train"])}
        if "cells" in d:
            if not isinstance(d["cells"], (list, tuple)):
                raise InputError(f"cells must be a list of cell names, got {d['cells']!r}")
            d["cells"] = tuple(d["cells"])
        return cls(**d)

    def widths(self, task: Task) -> dict[str, int]:
        """The hidden size of every cell: fixed, or matched by parameter count."""
        t = self.train
        layer = dict(num_layers=t.layers, dropout=t.dropout, bidirectional=t.bidirectional,
                     forget_bias=t.forget_bias)
        if self.hidden is not None:
            return {c: self.hidden for c in self.cells}
        width = t.hidden if t.hidden is not None else task.default_hidden
        target = self.params or task.model_config("lstm", width, **layer).num_parameters()
        return {c: match_hidden(task.model_config(c, 1, **layer), target) for c in self.cells}


@dataclass
class CompareResult:
    """What :func:`compare` returns: its configuration, run folder and task, every cell's
    :class:`~rnnlab.TrainResult` per seed, and the metrics written to ``metrics.json``."""

    config: CompareConfig
    run_dir: Path
    task: Task
    runs: dict[str, list[TrainResult]]
    metrics: dict

    def table(self) -> str:
        """The results table the ``rnnlab compare`` command prints."""
        return format_table(self.metrics)


def _mean_spread(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard deviation over seeds (None for one seed: no spread to show)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def aggregate(task: Task, config: CompareConfig, runs: dict[str, list[TrainResult]]) -> dict:
    cells = []
    for cell, results in runs.items():
        best, spread = _mean_spread([r.best for r in results])
        reached = [r.steps_to(task.target) for r in results]
        cells.append({
            "cell": cell,
            "hidden": results[0].model_config.hidden_size,
            "params": results[0].params,
            "best": best,
            "best_spread": spread,
            "best_per_seed": [r.best for r in results],
            "ratio_to_chance": best / task.chance if task.chance else None,
            "seconds": statistics.fmean(r.seconds for r in results),
            "seconds_per_step": statistics.fmean(r.seconds_per_step for r in results),
            "sequences_per_second": statistics.fmean(r.sequences_per_second for r in results),
            "steps_to_target": reached if len(reached) > 1 else reached[0],
            "runs": [{**r.summary(), "history": r.history, "dir": r.run_dir.name}
                     for r in results],
        })
    return {
        "kind": "compare",
        "task": task.name,
        "task_options": task.options_dict(),
        "metric": task.metric,
        "metric_help": task.metric_help,
        "higher_is_better": task.higher_is_better,
        "chance": task.chance,
        "baseline": task.baseline,
        "target": task.target,
        "config": config.to_dict(),
        "cells": cells,
    }


def format_table(metrics: dict) -> str:
    """The results table as plain text (the CLI prints it; the HTML has its own)."""
    m = metrics["metric"]
    baseline = metrics.get("baseline", "chance")
    ratio_head = "x chance" if baseline == "chance" else "x baseline"
    head = ["cell", "hidden", "params", f"best {m}", ratio_head, "s/step", "seq/s", "to target"]
    rows = []
    for c in metrics["cells"]:
        best = f"{c['best']:.4g}"
        if c["best_spread"]:
            best += f" ± {c['best_spread']:.2g}"
        ratio = c["ratio_to_chance"]
        reached = c["steps_to_target"]
        if isinstance(reached, list):
            reached = "/".join("-" if r is None else str(r) for r in reached)
        rows.append([
            c["cell"], str(c["hidden"]), str(c["params"]), best,
            "-" if ratio is None else f"{ratio:.3f}", f"{c['seconds_per_step'] * 1e3:.1f}ms",
            f"{c['sequences_per_second']:.0f}", "-" if reached is None else str(reached),
        ])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(s.ljust(w) for s, w in zip(row, widths, strict=True)) for row in [head, *rows]
    ]
    title = f"task {metrics['task']}: {m} ({baseline} {metrics['chance']:.4g}"
    if metrics.get("target") is not None:
        title += f", target {metrics['target']:.4g}"
    return "\n".join([title + ")", *lines])


def _check_resumable(run_dir: Path, saved: CompareConfig, config: CompareConfig) -> None:
    """Only the budget (steps, seconds, patience) may change when a comparison resumes."""
    old, new = saved.to_dict(), config.to_dict()
    for budget in ("steps", "seconds", "patience"):
        old["train"].pop(budget)
        new["train"].pop(budget)
    flat_old = {**{f"train.{k}": v for k, v in old.pop("train").items()}, **old}
    flat_new = {**{f"train.{k}": v for k, v in new.pop("train").items()}, **new}
    for key, value in flat_old.items():
        if flat_new[key] != value:
            raise InputError(
                f"cannot resume {str(run_dir)!r} with {key}={flat_new[key]!r}: it was started "
                f"with {key}={value!r}"
            )


def compare(
    config: CompareConfig | None = None,
    run_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    resume: bool = False,
    progress: str = "auto",
    report: bool = True,
    threads: int | None = None,
    after_run=None,
    **options,
) -> CompareResult:
    """Train every cell (× seeds) under the same conditions and write the report.

    With no arguments this is the built-in default (the adding problem). Pass a
    :class:`CompareConfig`, or its fields and TrainConfig's as keywords
    (``compare(task="copy", cells=("lstm", "gru"), steps=500, seeds=3)``). Returns a
    :class:`CompareResult` whose ``metrics`` is what ``metrics.json`` holds. ``threads``:
    CPU threads (default: the task's, as on the command line; restored on return).
    ``after_run(label, best)``: called after each (cell, seed) run (a sweep's progress).
    """
    if config is not None and options:
        raise InputError("give either a CompareConfig or keyword options, not both")
    config = config or CompareConfig.from_options(**options)
    with thread_policy(config.train.task, threads):
        return _compare(config, run_dir, force, resume, progress, report, threads, after_run)


def _compare(config: CompareConfig, run_dir, force, resume, progress, report,
             threads, after_run=None) -> CompareResult:
    if run_dir is None:
        run_dir = Path("runs") / f"compare-{config.train.task}"
    run_dir = Path(run_dir)
    ranks = world()  # under torchrun: rank 0 alone reads and writes the comparison's files
    # Decided on rank 0 before anything is written: another rank asking the file system
    # itself could already see the folder rank 0 is creating and take a different path.
    resuming = ranks.on_main(lambda: resume and holds_run(run_dir))
    if resuming:
        ranks.on_main(lambda: _check_resumable(run_dir, read_compare_config(run_dir), config))
    task = get_task(config.train.task, config.train.task_options)
    task.check(config.train)
    widths = config.widths(task)
    regularisers = {name: getattr(config.train, name) for name in REGULARISERS}
    plan = {  # every (cell, seed) run: its folder and configuration
        run_dir / f"{cell}-seed{config.train.seed + k}": config.train.replace(
            **without_unused_regularisers({"cell": cell, **regularisers}),
            hidden=widths[cell], seed=config.train.seed + k)
        for cell in config.cells for k in range(config.seeds)
    }
    if resuming:  # every started cell is checked before any trains
        ranks.on_main(lambda: check_compare_resume(run_dir, plan))

    def start() -> Path:
        folder = prepare_run_dir(run_dir, force=force, resume=resume)
        write_json(folder / RUN_MARKER, {"kind": "compare", "rnnlab": __version__})
        write_json(folder / "config.json", config.to_dict())
        return folder

    run_dir = ranks.on_main(start)
    resume = resume or ranks.size > 1  # the other ranks continue the folder rank 0 made
    runs: dict[str, list[TrainResult]] = {}
    for folder, cfg in plan.items():
        label = cfg.cell if config.seeds == 1 else f"{cfg.cell} seed {cfg.seed}"
        result = train(cfg, run_dir / folder.name, resume=resume, progress=progress,
                       label=label, task_instance=task, threads=threads)
        runs.setdefault(cfg.cell, []).append(result)
        if after_run is not None:
            after_run(label, result.best)
    metrics = aggregate(task, config, runs)
    result = CompareResult(config, run_dir, task, runs, metrics)
    if ranks.main:
        write_json(run_dir / "metrics.json", metrics)
        if report:
            from rnnlab.report import build_report

            build_report(run_dir)
            result.metrics = read_json(run_dir / "metrics.json")
    ranks.barrier()
    return result
