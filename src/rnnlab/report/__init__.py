"""The report of a run: metrics.json, PNG figures and one self-contained report.html.

``build_report(RUN)`` works on a comparison or a single training run; everything but
the gate heatmaps and gradient norms (which ``rnnlab.inspect`` recomputes from the
saved weights and stores in metrics.json) is redrawn from ``metrics.json`` alone. Those
are drawn only when missing or older than the weights (``inspect.figures_current``):
after ``rnnlab inspect`` the report takes them as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rnnlab._io import read_json, write_bytes_atomic, write_json
from rnnlab.report.html import render
from rnnlab.report.plots import CELL_TITLES, save_curves, save_forecast
from rnnlab.tasks.model import CELLS

# The figures a report shows where their files exist: (file name, heading).
IMAGES = [("curves.png", "Learning curves"),
          ("gradients.png", "Vanishing gradients: ‖∂L/∂h_t‖ over t"),
          ("forecast.png", "Forecast vs truth"),
          *((f"gates_{cell}.png", f"{CELL_TITLES.get(cell, cell)} gates on a sample sequence")
            for cell in CELLS)]  # every cell's: a run holds the files of its own cells


def as_comparison(metrics: dict) -> dict:
    """View the metrics of one training run in the comparison's shape (one cell)."""
    if "cells" in metrics:
        return metrics
    run = {k: v for k, v in metrics.items() if k not in ("task", "metric", "chance")}
    cell = {
        "cell": metrics["cell"], "hidden": metrics["hidden"], "params": metrics["params"],
        "best": metrics["best"], "best_spread": None, "best_per_seed": [metrics["best"]],
        "ratio_to_chance": (metrics["best"] / metrics["chance"]
                            if metrics["chance"] and metrics["best"] is not None else None),
        "seconds": metrics["seconds"], "seconds_per_step": metrics["seconds_per_step"],
        "sequences_per_second": metrics["sequences_per_second"],
        "steps_to_target": metrics["steps_to_target"], "runs": [{**run, "dir": "."}],
    }
    return {**metrics, "kind": "train", "cells": [cell]}


def build_report(run_dir: str | os.PathLike, *, probe: bool = True) -> Path:
    """(Re)draw the figures of ``run_dir`` and write ``report.html``; return its path.

    ``probe``: draw the gate and gradient figures too where they are not current (False:
    take whatever is there).
    """
    from rnnlab.inspect import cell_runs, figures_current, inspect_run, load_run

    run_dir = Path(run_dir)
    if probe and not figures_current(run_dir):
        inspect_run(run_dir)
    metrics = read_json(run_dir / "metrics.json")
    save_curves(run_dir / "curves.png", as_comparison(metrics))
    extras, seen = {}, set()
    for folder in cell_runs(run_dir):
        model, task = load_run(folder)
        cell = model.config.cell
        if cell in seen:
            continue
        seen.add(cell)
        extras[cell] = task.extras(model, torch.Generator().manual_seed(0))
    if any(extras.values()):
        metrics["extras"] = extras
        write_json(run_dir / "metrics.json", metrics)
    forecasts = {c: e["forecast_view"] for c, e in extras.items() if "forecast_view" in e}
    if forecasts:
        save_forecast(run_dir / "forecast.png", forecasts)
    return write_page(run_dir)


def write_page(run_dir: str | os.PathLike) -> Path:
    """Write ``report.html`` from metrics.json and the figures already in ``run_dir``.

    Draws nothing: cheap enough to rerun whenever the folder gains a page the report links
    (``rnnlab explore`` calls it after writing ``explore.html``).
    """
    run_dir = Path(run_dir)
    view = as_comparison(read_json(run_dir / "metrics.json"))
    if "config" not in view and (run_dir / "config.json").is_file():  # a single run
        view = {**view, "config": read_json(run_dir / "config.json")}
    page = run_dir / "report.html"
    write_bytes_atomic(page, render(run_dir, view, IMAGES).encode())
    return page
