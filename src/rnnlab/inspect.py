"""Look inside a saved run: gate activations and the gradient that reaches each step.

``inspect_run(RUN)`` reloads every trained model in a run folder (one ``rnnlab train``
run, or each cell of an ``rnnlab compare``), feeds the task's probe sequences through
it under ``rnnlab.nn.record``, and redraws the gate heatmaps and the vanishing-gradient
plot (‖∂L/∂h_t‖ over t, at initialisation and after training).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

import rnnlab.nn as rnn_nn
from rnnlab._io import RUN_MARKER, InputError, read_json, write_json
from rnnlab.tasks import ModelConfig, SequenceModel, Task, get_task


@dataclass
class Probe:
    """What one model shows on the probe batch."""

    cell: str
    gradients: dict[str, list[float]]  # "init" / "trained" -> mean ‖∂L/∂h_t‖ per step t
    gates: dict[str, list[list[float]]]  # gate name -> (T, H) of the first probe sequence


def load_run(run_dir: str | os.PathLike, weights: str = "model") -> tuple[SequenceModel, Task]:
    """Rebuild the model of a single training run with its ``weights`` (model | init)."""
    run_dir = Path(run_dir)
    marker = run_dir / RUN_MARKER
    if not marker.is_file():
        raise InputError(f"{str(run_dir)!r} is not an rnnlab run folder (no {RUN_MARKER})")
    if read_json(marker).get("kind") != "train":
        raise InputError(f"{str(run_dir)!r} is a comparison; pick one of its cell folders")
    model = SequenceModel(ModelConfig.from_dict(read_json(run_dir / "model.json")))
    path = run_dir / f"{weights}.safetensors"
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing: the run saved no {weights} weights yet")
    model.load_state_dict(load_file(str(path)))
    model.eval()
    info = read_json(run_dir / "task.json")
    return model, get_task(info["name"], info["options"])


def _first_layer_key(keys) -> str:
    forward = sorted(k for k in keys if not k.endswith("_reverse"))
    return next((k for k in forward if k.endswith("l0")), forward[0])


def _record(model: SequenceModel, task: Task, batch) -> tuple[list[float], dict]:
    model.zero_grad(set_to_none=True)
    with rnn_nn.record(model, gates=True, grads=True) as rec:
        loss, _ = task.loss(model, batch, None)
        loss.backward()
    key = _first_layer_key(rec.hidden_grads)
    grads = rec.hidden_grads[key]  # (B, T, H)
    norms = grads.norm(dim=-1).mean(dim=0)  # (T,)
    gates = {name: g[0].tolist() for name, g in rec.gates[key].items()}  # (T, H) each
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
    return Probe(model.config.cell, gradients, gates)


def cell_runs(run_dir: str | os.PathLike) -> list[Path]:
    """The training-run folders inside ``run_dir`` (itself, when it is one)."""
    run_dir = Path(run_dir)
    marker = run_dir / RUN_MARKER
    if not run_dir.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} does not exist")
    if not marker.is_file():
        raise InputError(f"{str(run_dir)!r} is not an rnnlab run folder (no {RUN_MARKER})")
    if read_json(marker).get("kind") == "train":
        return [run_dir]
    return sorted(p.parent for p in run_dir.glob(f"*/{RUN_MARKER}"))


def inspect_run(run_dir: str | os.PathLike) -> dict[str, Probe]:
    """Probe every trained model in a run folder, redraw its gate and gradient plots.

    Returns one :class:`Probe` per run subfolder name; also stores the gradient norms in
    the run's ``metrics.json`` (so the report can be redrawn from it alone).
    """
    from rnnlab.report.plots import save_gates, save_gradients

    run_dir = Path(run_dir)
    probes = {p.name: probe_run(p) for p in cell_runs(run_dir)}
    if not probes:
        raise InputError(f"{str(run_dir)!r} holds no trained runs to inspect")
    # One picture per cell: the first seed of each.
    first: dict[str, tuple[str, Probe]] = {}
    for name, probe in probes.items():
        first.setdefault(probe.cell, (name, probe))
    save_gradients(run_dir / "gradients.png", {c: p.gradients for c, (_, p) in first.items()})
    for cell, (_, probe) in first.items():
        save_gates(run_dir / f"gates_{cell}.png", cell, probe.gates)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = read_json(metrics_path)
        metrics["gradients"] = {c: p.gradients for c, (_, p) in first.items()}
        write_json(metrics_path, metrics)
    return probes
