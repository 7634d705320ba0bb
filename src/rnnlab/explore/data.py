"""Everything the page shows, gathered from a run folder (a training run or a comparison).

Run folders are read through :mod:`rnnlab.runs` only; every cell of a comparison sees
the same input (built from its first cell's task).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from rnnlab._io import InputError
from rnnlab.explore.connectivity import connectivity
from rnnlab.explore.inputs import ExploreInput, explore_input
from rnnlab.explore.trace import trace
from rnnlab.runs import cell_runs, load_model, open_train_run


@dataclass
class ModelData:
    name: str  # the run folder's name ("lstm-seed0", or the run's own)
    cell: str
    layers: list[dict[str, np.ndarray]]  # per layer: quantity -> (T, H) float32
    connectivity: np.ndarray | None  # (N, W) or None (bidirectional: not causal)
    weights: dict[str, np.ndarray] | None = None  # charlm: what the page's sampler runs
    # each entry of ``layers`` as rnnlab.nn.record names it ("l0", "l0_reverse", ...);
    # None: "l0", "l1", ... (one direction)
    keys: list[str] | None = None
    zoneout: float = 0.0  # the model's zoneout p, whose eval form the page's sampler runs

    def layer_keys(self) -> list[str]:
        return self.keys if self.keys is not None else [f"l{k}" for k in range(len(self.layers))]


@dataclass
class ExploreData:
    task: str
    source: str
    text: str | None
    series: np.ndarray | None  # (T, F)
    names: list[str]
    models: list[ModelData]
    window: int = 100
    vocab: str | None = None  # charlm: the characters, in the order of the model's ids
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.text) if self.text is not None else len(self.series)


def collect(run_dir: str | os.PathLike, *, text: str | None = None,
            data: str | os.PathLike | None = None, steps: int = 2000,
            connect_steps: int = 300, window: int = 100) -> ExploreData:
    """Trace every model of ``run_dir`` over the input and compute its connectivity."""
    if connect_steps < 0 or window < 1:
        raise InputError(f"connectivity needs steps >= 0 and a window >= 1, got "
                         f"{connect_steps} and {window}")
    folders = cell_runs(run_dir)
    if not folders:
        raise InputError(f"{str(run_dir)!r} holds no trained runs to explore")
    runs = [open_train_run(f) for f in folders]
    inp = explore_input(runs[0], text=text, data=data, steps=steps)
    out = ExploreData(runs[0].task["name"], inp.source, inp.text, inp.series, inp.names, [],
                      window, runs[0].task["artefacts"].get("vocab"))
    for run in runs:
        out.models.append(_model_data(run, load_model(run), inp, connect_steps, window,
                                      out.notes))
    return out


def _model_data(run, model, inp: ExploreInput, connect_steps, window, notes) -> ModelData:
    config = model.config
    if config.bidirectional:
        notes.append(f"{run.path.name} reads both ways (the direction switch shows each); "
                     f"its connectivity is not shown: a prediction that reads the whole "
                     f"input has no 'earlier steps'")
    layers = trace(model, inp.x)
    classes = config.output_size > 1 and run.task["name"] in ("charlm", "copy", "classify")
    conn = None
    if not config.bidirectional and connect_steps:
        conn = connectivity(model, inp.x, layers, classes, connect_steps, window)
    weights = None
    if run.task["name"] == "charlm" and not config.bidirectional:
        weights = {k: v.detach().numpy().astype(np.float32)
                   for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    return ModelData(run.path.name, config.cell, [lt.values for lt in layers], conn, weights,
                     [lt.key for lt in layers], config.zoneout)
