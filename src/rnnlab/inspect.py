"""Look inside a saved run: gate activations and the gradient that reaches each step.

``inspect_run(RUN)`` reloads every trained model in a run folder (one ``rnnlab train``
run, or each cell of an ``rnnlab compare``), feeds the task's probe sequences through
it under ``rnnlab.nn.record``, and redraws the gate heatmaps (with the steps the task
marks) and the vanishing-gradient plot (‖∂L/∂h_t‖ over t, at initialisation and after
training). ``figures_current(RUN)`` tells whether those figures are still those of the
saved weights, so that the report need not draw them again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import rnnlab.nn as rnn_nn
from rnnlab._io import InputError, write_json
from rnnlab.runs import cell_runs, load_model, open_train_run, read_metrics, read_train_config
from rnnlab.tasks import SequenceModel, Task, get_task

__all__ = ["Probe", "cell_runs", "figures_current", "inspect_run", "load_run", "probe_run"]

GRADIENTS_PNG = "gradients.png"
WEIGHTS = ("init.safetensors", "model.safetensors")  # the weights a probe reads


@dataclass
class Probe:
    """What one model shows on the probe batch."""

    cell: str
    gradients: dict[str, list[float]]  # "init" / "trained" -> mean ‖∂L/∂h_t‖ per step t
    gates: dict[str, list[list[float]]]  # gate name -> (T, H) of the first probe sequence
    marks: list[tuple[int, str]]  # (step, label) the task singles out in that sequence


def load_run(run_dir: str | os.PathLike, weights: str = "model") -> tuple[SequenceModel, Task]:
    """Rebuild the model of a single training run with its ``weights`` (model | init)."""
    run = open_train_run(run_dir)
    return load_model(run, weights), get_task(run.task["name"], run.task["options"])


def _first_layer_key(keys) -> str:
    forward = sorted(k for k in keys if not k.endswith("_reverse"))
    return next((k for k in forward if k.endswith("l0")), forward[0])


def shown_quantities(cell: str, rec: rnn_nn.Recording, key: str) -> dict[str, list]:
    """What the report draws of layer ``key``'s first sequence: its recorded gates, (T, H)
    lists each, and, for the min cells, which have no cell state, h itself."""
    shown = {name: g[0].tolist() for name, g in rec.gates[key].items()}
    if cell in ("mingru", "minlstm"):
        shown["h"] = rec.hidden[key][0].tolist()
    return shown


def _record(model: SequenceModel, task: Task, batch) -> tuple[list[float], dict]:
    model.zero_grad(set_to_none=True)
    with rnn_nn.record(model, gates=True, grads=True) as rec:
        loss, _ = task.loss(model, batch, None)
        loss.backward()
    key = _first_layer_key(rec.hidden_grads)
    grads = rec.hidden_grads[key]  # (B, T, H)
    norms = grads.norm(dim=-1).mean(dim=0)  # (T,)
    gates = shown_quantities(model.config.cell, rec, key)
    model.zero_grad(set_to_none=True)
    return norms.tolist(), gates


def probe_run(run_dir: str | os.PathLike) -> Probe:
    """Gradient norms at init and after training, and trained gate activations."""
    gradients, gates = {}, {}
    for weights, name in (("init", "init"), ("model", "trained")):
        model, task = load_run(run_dir, weights)
        batch = task.probe()
        gradients[name], g = _record(model, task, batch)
        if name == "trained":
            gates = g
    return Probe(model.config.cell, gradients, gates, task.probe_marks())


def gates_png(cell: str) -> str:
    return f"gates_{cell}.png"


def figures_current(run_dir: str | os.PathLike) -> bool:
    """Whether the figures :func:`inspect_run` draws all exist, each newer than every
    weights file of the run, and metrics.json (if any) holds the gradient norms."""
    run_dir = Path(run_dir)
    folders = cell_runs(run_dir)
    cells = {read_train_config(f).cell for f in folders}
    figures = [run_dir / GRADIENTS_PNG, *(run_dir / gates_png(cell) for cell in cells)]
    weights = [f / name for f in folders for name in WEIGHTS]
    if not folders or not all(p.is_file() for p in figures + weights):
        return False
    if (run_dir / "metrics.json").is_file() and "gradients" not in read_metrics(run_dir):
        return False
    drawn = min(p.stat().st_mtime_ns for p in figures)
    return drawn > max(p.stat().st_mtime_ns for p in weights)


def inspect_run(run_dir: str | os.PathLike) -> dict[str, Probe]:
    """Probe every trained model in a run folder, redraw its gate and gradient plots.

    Returns one :class:`Probe` per run subfolder name; also stores the gradient norms in
    the run's ``metrics.json`` (so the report can be redrawn from it alone).
    """
    from rnnlab.report.plots import save_gates, save_gradients

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = read_metrics(run_dir) if metrics_path.is_file() else None
    probes = {p.name: probe_run(p) for p in cell_runs(run_dir)}
    if not probes:
        raise InputError(f"{str(run_dir)!r} holds no trained runs to inspect")
    # One picture per cell: the first seed of each.
    first: dict[str, tuple[str, Probe]] = {}
    for name, probe in probes.items():
        first.setdefault(probe.cell, (name, probe))
    save_gradients(run_dir / GRADIENTS_PNG, {c: p.gradients for c, (_, p) in first.items()})
    for cell, (_, probe) in first.items():
        save_gates(run_dir / gates_png(cell), cell, probe.gates, probe.marks)
    if metrics is not None:
        metrics["gradients"] = {c: p.gradients for c, (_, p) in first.items()}
        write_json(metrics_path, metrics)
    return probes
