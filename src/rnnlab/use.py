"""Use a trained run: ``generate`` text (charlm) and ``predict`` future rows (forecast)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from rnnlab._io import RUN_MARKER, InputError, read_json, write_bytes_atomic
from rnnlab.tasks import ModelConfig, SequenceModel
from rnnlab.tasks.charlm import sample
from rnnlab.tasks.forecast import ForecastOptions, forecast_next, load_series


def pick_run(run_dir: str | os.PathLike, task: str, cell: str | None = None) -> Path:
    """The training-run folder to use: ``run_dir`` itself, or one cell of a comparison."""
    from rnnlab.inspect import cell_runs

    runs = cell_runs(run_dir)
    infos = [(p, read_json(p / "task.json"), read_json(p / "model.json")) for p in runs]
    infos = [(p, t, m) for p, t, m in infos if t["name"] == task]
    if not infos:
        raise InputError(f"{str(run_dir)!r} holds no {task} model; train one with --task {task}")
    if cell is not None:
        infos = [(p, t, m) for p, t, m in infos if m["cell"] == cell]
        if not infos:
            raise InputError(f"{str(run_dir)!r} has no {cell} model")
    elif len({m["cell"] for _, _, m in infos}) > 1:
        # A comparison: take the cell with the best validation score.
        def score(p: Path) -> float:
            m = read_json(p / "metrics.json")
            best = m.get("best")
            if best is None:
                return float("inf")
            return -best if m.get("higher_is_better") else best

        return min((p for p, _, _ in infos), key=score)
    return infos[0][0]


def _load(run: Path) -> tuple[SequenceModel, dict]:
    if not (run / "model.safetensors").is_file():
        raise InputError(f"{str(run)!r} has no trained weights (model.safetensors)")
    model = SequenceModel(ModelConfig.from_dict(read_json(run / "model.json")))
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    model.eval()
    return model, read_json(run / "task.json")


def generate(run_dir: str | os.PathLike, prime: str = "", length: int = 500,
             temperature: float = 0.8, seed: int = 0, cell: str | None = None) -> str:
    """Text sampled from the charlm model of a run: ``prime`` followed by ``length`` chars."""
    if not Path(run_dir).joinpath(RUN_MARKER).is_file():
        raise InputError(f"{str(run_dir)!r} is not an rnnlab run folder (no {RUN_MARKER})")
    model, info = _load(pick_run(run_dir, "charlm", cell))
    vocab = info["artefacts"]["vocab"]
    return sample(model, vocab, prime, length, temperature, torch.Generator().manual_seed(seed))


def predict(run_dir: str | os.PathLike, data: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, cell: str | None = None,
            force: bool = False) -> Path:
    """Forecast the ``horizon`` rows after the end of ``data`` (default: the training CSV)
    and write them as CSV (columns: step, then the forecast columns); return its path."""
    if not Path(run_dir).joinpath(RUN_MARKER).is_file():
        raise InputError(f"{str(run_dir)!r} is not an rnnlab run folder (no {RUN_MARKER})")
    run = pick_run(run_dir, "forecast", cell)
    model, info = _load(run)
    options = dict(info["options"])
    columns = info["artefacts"]["columns"]
    if data is not None:
        options.update(path=str(data), columns=columns)
    _, values = load_series(ForecastOptions(**options))
    future = forecast_next(model, info["artefacts"], options, values)
    out = Path(out) if out is not None else Path(run_dir) / "forecast.csv"
    if out.exists() and not force:
        raise InputError(f"{str(out)!r} already exists; pass --force to overwrite it")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *columns])
    for k, row in enumerate(np.asarray(future), start=1):
        writer.writerow([k, *(f"{v:.6g}" for v in row)])
    write_bytes_atomic(out, buf.getvalue().encode())
    return out
