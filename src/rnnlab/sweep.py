"""A sweep: one comparison per value of one setting, and where each cell breaks.

``sweep(config, key, values)`` runs :func:`rnnlab.compare.compare` once per value of
``key`` — a task option (``length`` of adding, ``delay`` of copy, ...) or the model's
``hidden`` / ``layers`` — in a subfolder ``<key>=<value>`` of the sweep's folder, every
cell under the same conditions. The sweep folder adds ``run.json`` (kind "sweep"),
``config.json`` (key, values and the shared CompareConfig), ``metrics.json`` (each
cell's best metric per value, from which the report is redrawn), ``sweep.png`` and
``report.html``. Resuming continues each value's comparison with the same machinery as
``compare --resume``: finished values are kept, the interrupted one continues, the rest
start.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from rnnlab._io import RUN_MARKER, InputError, prepare_run_dir, write_bytes_atomic, write_json
from rnnlab._version import __version__
from rnnlab.compare import CompareConfig, compare
from rnnlab.runs import holds_run, read_sweep_config
from rnnlab.tasks import get_task_class
from rnnlab.training.progress import Progress

MODEL_KEYS = ("hidden", "layers")


def sweep_keys(task: str) -> list[str]:
    """What a sweep over ``task`` may vary: its options (but its data file) and the model's."""
    options = [f.name for f in dataclasses.fields(get_task_class(task).Options)
               if f.name != "path"]
    return [*options, *MODEL_KEYS]


@dataclass(frozen=True)
class SweepConfig:
    """The swept setting, its values, and the comparison every value runs."""

    key: str
    values: tuple
    compare: CompareConfig

    def __post_init__(self):
        keys = sweep_keys(self.compare.train.task)
        if self.key not in keys:
            raise InputError(f"cannot sweep {self.key!r} for task {self.compare.train.task}; "
                             f"sweepable keys: {', '.join(keys)}")
        values = tuple(self.values)
        object.__setattr__(self, "values", values)
        if not values:
            raise InputError(f"--sweep {self.key}= names no values; expected V1,V2,...")
        if len(set(map(str, values))) != len(values):
            raise InputError(f"--sweep {self.key}: a value is repeated in {values!r}")
        task = get_task_class(self.compare.train.task)
        for value in values:  # each value must make a valid comparison
            at = self.at(value)
            task.options_from_dict(at.train.task_options)

    def at(self, value) -> CompareConfig:
        """The comparison of one value."""
        c = self.compare
        if self.key == "hidden":
            return dataclasses.replace(c, hidden=value, params=None)
        if self.key == "layers":
            return dataclasses.replace(c, train=c.train.replace(layers=value))
        return dataclasses.replace(c, train=c.train.replace(
            task_options={**c.train.task_options, self.key: value}))

    def folder(self, value) -> str:
        return f"{self.key}={value}"

    def to_dict(self) -> dict:
        return {"key": self.key, "values": list(self.values), "compare": self.compare.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> SweepConfig:
        if not isinstance(d, dict):
            raise InputError(f"a sweep configuration is a JSON object, got {type(d).__name__}")
        names = {"key", "values", "compare"}
        if set(d) != names:
            raise InputError(f"a sweep configuration has exactly the fields key, values, "
                             f"compare; got {', '.join(sorted(d))}")
        if not isinstance(d["key"], str) or not isinstance(d["values"], list):
            raise InputError("key must be text and values a list")
        return cls(d["key"], tuple(d["values"]), CompareConfig.from_dict(d["compare"]))


def _check_resumable(run_dir: Path, saved: SweepConfig, config: SweepConfig) -> None:
    if (saved.key, saved.values) != (config.key, config.values):
        raise InputError(f"cannot resume {str(run_dir)!r} with --sweep {config.key}="
                         f"{','.join(map(str, config.values))}: it was started with --sweep "
                         f"{saved.key}={','.join(map(str, saved.values))}")


def sweep(config: SweepConfig, run_dir: str | os.PathLike, *, force: bool = False,
          resume: bool = False, progress: str = "auto", threads: int | None = None) -> dict:
    """Run every value's comparison in ``run_dir/<key>=<value>``; return metrics.json's dict.

    One progress display covers the whole sweep (a step per trained run). Resuming
    (``resume=True``) needs the same key and values; each comparison resumes as
    ``compare(resume=True)`` does.
    """
    run_dir = Path(run_dir)
    if resume and holds_run(run_dir):
        _check_resumable(run_dir, read_sweep_config(run_dir), config)
    folder = prepare_run_dir(run_dir, force=force, resume=resume)
    write_json(folder / RUN_MARKER, {"kind": "sweep", "rnnlab": __version__})
    write_json(folder / "config.json", config.to_dict())
    c = config.compare
    total = len(config.values) * len(c.cells) * c.seeds
    bar = Progress(progress, total, f"sweep {config.key}")
    done = [0]

    def after_run(label: str, best) -> None:
        done[0] += 1
        shown = "none" if best is None else f"{best:.4g}"
        bar.step(float("nan") if best is None else best)
        if bar.mode == "lines":
            print(f"sweep {config.key}: {done[0]}/{total} runs done ({label}: best "
                  f"{shown})", flush=True)

    points = []
    try:
        for value in config.values:
            result = compare(config.at(value), folder / config.folder(value), resume=resume,
                             progress="none", report=False, threads=threads,
                             after_run=lambda label, best, v=value: after_run(
                                 f"{config.folder(v)} {label}", best))
            points.append({"value": value, "folder": config.folder(value),
                           "chance": result.metrics["chance"],
                           "cells": {cell["cell"]: {k: cell[k] for k in (
                               "best", "best_spread", "hidden", "params", "seconds")}
                               for cell in result.metrics["cells"]}})
    finally:
        bar.close()
    head = result.metrics
    metrics = {"kind": "sweep", "key": config.key, "values": list(config.values),
               "task": head["task"], "metric": head["metric"],
               "metric_help": head["metric_help"], "higher_is_better": head["higher_is_better"],
               "chance": head["chance"], "baseline": head["baseline"], "target": head["target"],
               "cells": list(c.cells), "points": points, "config": config.to_dict()}
    write_json(folder / "metrics.json", metrics)
    build_sweep_report(folder, metrics)
    return metrics


def build_sweep_report(run_dir: Path, metrics: dict) -> Path:
    """``sweep.png`` (metric vs swept value per cell, with the chance level) and the page."""
    from rnnlab.report.html import render_sweep
    from rnnlab.report.plots import save_sweep

    save_sweep(run_dir / "sweep.png", metrics)
    page = run_dir / "report.html"
    write_bytes_atomic(page, render_sweep(run_dir, metrics).encode())
    return page


def format_sweep(metrics: dict) -> str:
    """The sweep as plain text: one row per value, each cell's best metric."""
    head = [metrics["key"], metrics.get("baseline", "chance"), *metrics["cells"]]
    rows = [[str(p["value"]), f"{p['chance']:.4g}", *(
        "-" if p["cells"].get(c, {}).get("best") is None else f"{p['cells'][c]['best']:.4g}"
        for c in metrics["cells"])] for p in metrics["points"]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(s.ljust(w) for s, w in zip(r, widths, strict=True))
             for r in [head, *rows]]
    return "\n".join([f"task {metrics['task']}: best {metrics['metric']} per "
                       f"{metrics['key']}", *lines])
