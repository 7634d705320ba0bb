"""What the explorer feeds a run's model: the run's validation data, or the user's own.

``explore_input`` returns an :class:`ExploreInput`: the model's input tensor (one
sequence, batch first) and how the page shows it — characters for charlm, a line per
feature for the series tasks. A charlm run reads ``--text``/``--data`` (UTF-8 text in
the run's vocabulary), a forecast run a CSV with its training columns (scaled as in
training); every other task shows its first validation (probe) sequence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from rnnlab._io import InputError, read_text
from rnnlab.runs import TrainRun
from rnnlab.tasks import get_task
from rnnlab.tasks.forecast import ForecastOptions, load_series, to_model_units


@dataclass(frozen=True)
class ExploreInput:
    x: torch.Tensor  # (1, T) token ids or (1, T, F) features
    text: str | None  # charlm: the characters of x
    series: np.ndarray | None  # (T, F) what the page draws for the series tasks
    names: list[str]  # one name per drawn feature (series) or []
    source: str  # where the input came from, said on the page


def explore_input(run: TrainRun, *, text: str | None = None,
                  data: str | os.PathLike | None = None, steps: int = 2000) -> ExploreInput:
    """The first ``steps`` steps of the input for ``run`` (see the module docstring)."""
    if steps < 2:
        raise InputError(f"steps must be at least 2, got {steps}")
    task = run.task["name"]
    if text is not None and data is not None:
        raise InputError("give --text or --data, not both")
    if task == "charlm":
        return _charlm(run, text, data, steps)
    if text is not None:
        raise InputError(f"--text is for charlm runs; this run's task is {task}")
    if task == "forecast":
        return _forecast(run, data, steps)
    if data is not None:
        raise InputError(f"--data is for charlm (text) and forecast (CSV) runs; a {task} run "
                         f"is explored on its own validation sequences")
    x = _task(run).probe()["x"][:1]
    if x.dtype == torch.long:  # token tasks (copy): one line of symbol ids
        series, names = x[0, :, None].numpy().astype(np.float32), ["symbol"]
    else:
        series, names = x[0].numpy().astype(np.float32), [f"x{k}" for k in range(x.shape[-1])]
    return ExploreInput(x, None, series, names, f"the first validation sequence of {task}")


def _task(run: TrainRun):
    """The run's task rebuilt from its options, to read its validation data."""
    try:
        return get_task(run.task["name"], run.task["options"])
    except InputError as err:
        raise InputError(f"the run's validation data cannot be rebuilt ({err}); give the "
                         f"input with --data") from None


def _charlm(run: TrainRun, text: str | None, data, steps: int) -> ExploreInput:
    if data is not None:
        text, source = read_text(data, "text file"), f"the text file {str(data)!r}"
    elif text is not None:
        source = "the text given with --text"
    else:
        task = _task(run)
        text = "".join(task.vocab[i] for i in task.val_ids.tolist())
        source = "the run's held-out validation text"
    text = text[:steps]
    if len(text) < 2:
        raise InputError(f"the text has {len(text)} character(s); the explorer needs at least 2")
    vocab = run.task["artefacts"]["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted({ch for ch in text if ch not in index})
    if unknown:
        raise InputError(f"the text uses characters the model never saw: {''.join(unknown)!r}; "
                         f"its vocabulary is {vocab!r}")
    x = torch.tensor([[index[ch] for ch in text]], dtype=torch.long)
    return ExploreInput(x, text, None, [], source)


def _forecast(run: TrainRun, data, steps: int) -> ExploreInput:
    info = run.task
    options, columns = dict(info["options"]), info["artefacts"]["columns"]
    if data is None:
        z = _task(run).val_z.numpy()
        source = "the run's held-out validation series (scaled as in training)"
    else:
        options.update(path=str(data), columns=columns)
        _, values = load_series(ForecastOptions(**options))
        mean, std = np.asarray(info["artefacts"]["mean"]), np.asarray(info["artefacts"]["std"])
        model_units = to_model_units(np.asarray(values, dtype=np.float64),
                                     options.get("transform", "none"), list(columns))
        z = (model_units - mean) / std
        source = f"the CSV {str(data)!r} (scaled as in training)"
    z = np.asarray(z, dtype=np.float32)[:steps]
    if len(z) < 2:
        raise InputError(f"the series has {len(z)} row(s); the explorer needs at least 2")
    if options.get("target") == "change":  # the model reads a window minus its last row
        z = z - z[-1]
        source += ", minus its last row as the model reads a window (target=change)"
    return ExploreInput(torch.from_numpy(z)[None], None, z, list(columns), source)
