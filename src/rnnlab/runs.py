"""Reading run folders: every file checked on the way in, any damage named in one line.

A training-run folder (``rnnlab train``; every cell of a comparison is one) holds::

    run.json           {"kind": "train", "rnnlab": version}
    config.json        the TrainConfig            model.json   the ModelConfig
    task.json          task name, options, metric, chance, artefacts (vocabulary, scaling)
    init.safetensors   the initial weights        model.safetensors   the best weights
    metrics.json       summary and validation history (written when the run ends)
    checkpoints/       step-N/ folders, each with a SHA-256 manifest; ``latest``

A comparison folder holds run.json (kind "compare"), config.json (the CompareConfig),
metrics.json and one training-run folder ``<cell>-seed<seed>`` per cell and seed.

Every reader here checks what it reads — JSON types and ranges through the frozen
configuration dataclasses, weights against the SHA-256 in their header and the shapes
``model.json`` gives, checkpoints against their manifest — and raises
:class:`~rnnlab._io.InputError` naming the file and the problem. Where an intact copy
exists it is used instead, with a :class:`~rnnlab._io.RunWarning` that says so: damaged
best weights give way to the newest intact checkpoint's, damaged initial weights are
rebuilt from the seed. ``rnnlab predict/generate/inspect/export`` and every resume read
run folders through this module, and a resume checks the whole folder before training.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnlab._io import RUN_MARKER, InputError, RunWarning
from rnnlab.tasks import TASKS, ModelConfig, SequenceModel
from rnnlab.training.checkpoint import (
    find_checkpoint,
    read_weights,
    save_weights,
    verify_checkpoint,
)
from rnnlab.training.config import TrainConfig

KINDS = ("train", "compare", "sweep")


def _damaged(path: Path, problem: str) -> InputError:
    return InputError(f"{str(path)!r} is damaged: {problem}")


def _read_object(path: Path) -> dict:
    """A JSON file holding one object."""
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing (the run folder is incomplete)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged(path, f"it cannot be read as text ({err})") from None
    if not text.strip():
        raise _damaged(path, "the file is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise _damaged(path, f"not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise _damaged(path, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _checked(path: Path, build, data):
    """``build(data)`` with any InputError reported as damage to ``path``."""
    try:
        return build(data)
    except InputError as err:
        raise _damaged(path, str(err)) from None


def _listed(problems: list[str]) -> str:
    return f" ({'; '.join(problems)})" if problems else ""


def _notify(message: str) -> None:
    warnings.warn(message, RunWarning, stacklevel=3)


# ----------------------------------------------------------------------------- configs


def run_kind(run_dir: str | os.PathLike) -> str:
    """"train" or "compare", from the folder's run.json."""
    p = Path(run_dir)
    if not p.exists():
        raise InputError(f"run folder {str(p)!r} does not exist")
    if not p.is_dir():
        raise InputError(f"run folder {str(p)!r} is not a folder")
    marker = p / RUN_MARKER
    if not marker.exists():
        raise InputError(f"{str(p)!r} is not an rnnlab run folder (no {RUN_MARKER})")
    kind = _read_object(marker).get("kind")
    if kind not in KINDS:
        raise _damaged(marker, f"kind must be one of {', '.join(KINDS)}, got {_short(kind)}")
    return kind


def read_train_config(run_dir: str | os.PathLike) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    return _checked(path, TrainConfig.from_dict, _read_object(path))


def read_compare_config(run_dir: str | os.PathLike):
    """The CompareConfig of a comparison folder."""
    from rnnlab.compare import CompareConfig  # compare reads its folders through this module

    kind = run_kind(run_dir)
    if kind != "compare":
        raise InputError(f"{str(run_dir)!r} is {_WHAT[kind]}, not a comparison")
    path = Path(run_dir) / "config.json"
    return _checked(path, CompareConfig.from_dict, _read_object(path))


_WHAT = {"train": "a training run",
         "sweep": "a sweep (each of its <key>=<value> folders is a comparison)"}


def read_sweep_config(run_dir: str | os.PathLike):
    """The SweepConfig of a sweep folder."""
    from rnnlab.sweep import SweepConfig  # the sweep reads its folders through this module

    if run_kind(run_dir) != "sweep":
        raise InputError(f"{str(run_dir)!r} is not a sweep")
    path = Path(run_dir) / "config.json"
    return _checked(path, SweepConfig.from_dict, _read_object(path))


@dataclass(frozen=True)
class TrainRun:
    """The checked configuration files of one training-run folder."""

    path: Path
    config: TrainConfig
    model: ModelConfig
    task: dict  # task.json


def open_train_run(run_dir: str | os.PathLike) -> TrainRun:
    """Check run.json, config.json, model.json and task.json of a training-run folder."""
    p = Path(run_dir)
    kind = run_kind(p)
    if kind == "sweep":
        raise InputError(f"{str(p)!r} is a sweep; pick a cell folder of one of its "
                         "<key>=<value> comparisons")
    if kind != "train":
        raise InputError(f"{str(p)!r} is a comparison; pick one of its cell folders")
    config = read_train_config(p)
    if config.task not in TASKS:
        raise _damaged(p / "config.json", f"unknown task {config.task!r}")
    path = p / "model.json"
    model = _checked(path, ModelConfig.from_dict, _read_object(path))
    for name, value, expected in (
        ("cell", model.cell, config.cell), ("num_layers", model.num_layers, config.layers),
        ("bidirectional", model.bidirectional, config.bidirectional),
        ("hidden_size", model.hidden_size, config.hidden or model.hidden_size),
    ):
        if value != expected:
            raise _damaged(path, f"{name} is {value!r} but config.json trained {expected!r}")
    return TrainRun(p, config, model, _task_info(p / "task.json", config, model))


def _task_info(path: Path, config: TrainConfig, model: ModelConfig) -> dict:
    info = _read_object(path)
    name = info.get("name")
    if name != config.task:
        raise _damaged(path, f"name is {name!r} but config.json trained task {config.task!r}")
    task = TASKS[name]
    if not isinstance(info.get("options"), dict):
        raise _damaged(path, f"options must be a JSON object, got {_short(info.get('options'))}")
    _checked(path, task.options_from_dict, info["options"])
    for key, expected in (("metric", task.metric), ("higher_is_better", task.higher_is_better)):
        if info.get(key) != expected:
            raise _damaged(path, f"{key} is {info.get(key)!r}; task {name} has {expected!r}")
    if info.get("chance") is not None and not _number(info.get("chance")):
        raise _damaged(path, f"chance must be a number, got {_short(info.get('chance'))}")
    artefacts = info.get("artefacts")
    if not isinstance(artefacts, dict):
        raise _damaged(path, f"artefacts must be a JSON object, got {_short(artefacts)}")
    problem = _ARTEFACTS.get(name, lambda a, m: None)(artefacts, model)
    if problem:
        raise _damaged(path, f"artefacts: {problem}")
    return info


def _short(value) -> str:
    """A value as it appears in a message: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(name: str, value, count: int, *, positive: bool = False) -> str | None:
    ok = isinstance(value, list) and len(value) == count and all(
        _number(v) and (v > 0 or not positive) for v in value
    )
    kind = "positive numbers" if positive else "numbers"
    return None if ok else f"{name} must be a list of {count} finite {kind}, got {_short(value)}"


def _names(name: str, value, count: int) -> str | None:
    ok = isinstance(value, list) and len(value) == count and all(
        isinstance(v, str) for v in value
    )
    return None if ok else f"{name} must be a list of {count} names, got {_short(value)}"


def _forecast_artefacts(a: dict, model: ModelConfig) -> str | None:
    C = model.input_size
    return (_names("columns", a.get("columns"), C) or _numbers("mean", a.get("mean"), C)
            or _numbers("std", a.get("std"), C, positive=True))


def _charlm_artefacts(a: dict, model: ModelConfig) -> str | None:
    vocab = a.get("vocab")
    if not (isinstance(vocab, str) and len(vocab) == model.input_size == len(set(vocab))):
        return (f"vocab must be the model's {model.input_size} distinct characters, got "
                f"{_short(vocab)}")
    return None


def _classify_artefacts(a: dict, model: ModelConfig) -> str | None:
    F = model.input_size
    return (_names("classes", a.get("classes"), model.output_size)
            or _numbers("mean", a.get("mean"), F) or _numbers("std", a.get("std"), F,
                                                              positive=True))


# What each task saves beside its model (Task.artefacts) and reads back later.
_ARTEFACTS = {"forecast": _forecast_artefacts, "charlm": _charlm_artefacts,
              "classify": _classify_artefacts}


# ----------------------------------------------------------------------------- weights


def _load_into(model: SequenceModel, path: Path) -> None:
    tensors = read_weights(path)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise _damaged(path, f"its tensors do not match model.json (missing: "
                             f"{', '.join(missing) or '-'}; unexpected: "
                             f"{', '.join(unexpected) or '-'})")
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise _damaged(path, f"tensor {key} is {got.dtype} {tuple(got.shape)}; model.json "
                                 f"needs {want.dtype} {tuple(want.shape)}")
    model.load_state_dict(tensors)


def _initial(run: TrainRun) -> SequenceModel:
    """The run's initial weights, rebuilt from its seed as the training loop built them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.config.seed)
        return SequenceModel(run.model)


def load_model(run: TrainRun, weights: str = "model") -> SequenceModel:
    """The run's model with its ``weights``: "model" (the best) or "init", in eval mode.

    Damaged best weights give way to the newest intact checkpoint's, damaged initial
    weights to a rebuild from the seed; either way a RunWarning says so.
    """
    model = SequenceModel(run.model)
    path = run.path / f"{weights}.safetensors"
    try:
        _load_into(model, path)
    except InputError as problem:
        if weights == "init":
            model.load_state_dict(_initial(run).state_dict())
            _notify(f"{problem}; using initial weights rebuilt from the seed instead")
        else:
            checkpoint, skipped = find_checkpoint(run.path)
            if checkpoint is None:
                raise InputError(f"{problem}, and the run has no intact checkpoint to use "
                                 f"instead{_listed(skipped)}") from None
            for damage in skipped:
                _notify(f"skipping {damage}")
            _load_into(model, checkpoint / "model.safetensors")
            _notify(f"{problem}; using the weights of checkpoint {checkpoint.name} instead")
    model.eval()
    return model


# ----------------------------------------------------------------------------- folders


def cell_runs(run_dir: str | os.PathLike) -> list[Path]:
    """The training-run folders of ``run_dir``: itself, or a comparison's cell folders
    (in the order of its cells and seeds; those not yet started are left out)."""
    p = Path(run_dir)
    if run_kind(p) == "train":
        return [p]
    config = read_compare_config(p)
    folders = [p / f"{cell}-seed{config.train.seed + k}" for cell in config.cells
               for k in range(config.seeds)]
    return [f for f in folders if (f / RUN_MARKER).is_file()]


def pick_run(run_dir: str | os.PathLike, cell: str | None = None,
             task: str | None = None) -> TrainRun:
    """The one training run to use: ``run_dir`` itself, or the ``cell`` of a comparison.

    A comparison of several cells needs ``cell``; a cell trained with several seeds
    gives its first seed's run (with a RunWarning naming it).
    """
    p = Path(run_dir)
    folders = cell_runs(p)
    if run_kind(p) == "train":
        config = read_train_config(p)
        runs, found_task = {config.cell: folders}, config.task
    else:
        compared = read_compare_config(p)
        runs = {c: [f for f in folders if f.name.startswith(f"{c}-seed")] for c in compared.cells}
        runs, found_task = {c: f for c, f in runs.items() if f}, compared.train.task
    if task is not None and found_task != task:
        raise InputError(f"{str(p)!r} holds a {found_task} model, not a {task} one; train one "
                         f"with --task {task}")
    if not runs:
        raise InputError(f"{str(p)!r} holds no trained runs yet")
    choices = " or ".join(runs)
    if cell is None:
        if len(runs) > 1:
            raise InputError(f"{str(p)!r} is a comparison of {', '.join(runs)}; choose one with "
                             f"--cell {choices}")
        cell = next(iter(runs))
    if cell not in runs:
        raise InputError(f"{str(p)!r} has no {cell!r} model; choose --cell {choices}")
    if len(runs[cell]) > 1:
        _notify(f"{str(p)!r} holds {len(runs[cell])} {cell} runs (one per seed); using "
                f"{runs[cell][0].name}")
    return open_train_run(runs[cell][0])


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """A run's metrics.json, checked for what the report draws from it."""
    p = Path(run_dir)
    kind = run_kind(p)
    if kind == "sweep":
        raise InputError(f"{str(p)!r} is {_WHAT[kind]}; choose one of them")
    path = p / "metrics.json"
    metrics = _read_object(path)
    problem = _fields(metrics, _METRICS_HEAD)
    if problem is None and kind == "compare":
        cells = metrics.get("cells")
        if not isinstance(cells, list) or not cells:
            problem = f"cells must be a non-empty list, got {_short(cells)}"
        for c in cells if problem is None else ():
            problem = problem or _fields(c, _METRICS_CELL) or _runs(c.get("runs"))
    elif problem is None:
        problem = _fields(metrics, _METRICS_CELL) or _history(metrics.get("history"))
    if problem:
        raise _damaged(path, problem)
    return metrics


_NUM, _OPT = "number", "number or null"
_METRICS_HEAD = {"task": str, "metric": str, "chance": _OPT, "higher_is_better": bool}
_METRICS_CELL = {"cell": str, "hidden": int, "params": int, "best": _OPT, "seconds": _NUM,
                 "seconds_per_step": _NUM, "sequences_per_second": _NUM}


def _fields(obj, schema: dict) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {_short(obj)}"
    for key, kind in schema.items():
        value = obj.get(key)
        if kind in (_NUM, _OPT):
            ok = _number(value) or (kind == _OPT and value is None)
        else:
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            want = kind if isinstance(kind, str) else {str: "text", int: "an integer",
                                                       bool: "true or false"}[kind]
            return f"{key} must be {want}, got {_short(value)}"
    return None


def _history(rows) -> str | None:
    if not isinstance(rows, list):
        return f"history must be a list, got {_short(rows)}"
    for row in rows:
        problem = _fields(row, {"step": int, "seconds": _NUM, "val": _OPT})
        if problem:
            return f"history: {problem}"
    return None


def _runs(runs) -> str | None:
    if not isinstance(runs, list) or not runs:
        return f"runs must be a non-empty list, got {_short(runs)}"
    for run in runs:
        problem = _fields(run, {}) or _history(run.get("history"))
        if problem:
            return problem
    return None


# ----------------------------------------------------------------------------- resume


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run (its run.json), intact or not."""
    return (Path(run_dir) / RUN_MARKER).is_file()


def resume_config(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    """The configuration to continue a run with: the saved one, with the new budget.

    Anything but the budget (steps, seconds, patience) that differs is an error.
    """
    if run_kind(run_dir) != "train":
        raise InputError(f"{str(run_dir)!r} is a comparison; continue it with rnnlab compare "
                         "--resume")
    saved = read_train_config(run_dir)
    if config is None:
        return saved
    for name in saved.to_dict():
        if name in ("steps", "seconds", "patience"):
            continue
        if getattr(saved, name) != getattr(config, name):
            raise InputError(
                f"cannot resume {str(run_dir)!r} with {name}={getattr(config, name)!r}: the run "
                f"was started with {name}={getattr(saved, name)!r}"
            )
    return saved.replace(steps=config.steps, seconds=config.seconds, patience=config.patience)


def resume_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """Check a run folder before it is continued; return its newest intact checkpoint.

    Every file a later command reads is checked now, not after training. Damaged initial
    weights are rewritten from the seed, damaged best weights from the checkpoint of
    their step when one is intact (a RunWarning says so); otherwise the damage is an
    InputError, and so is a run whose checkpoints are all damaged. None: the run has no
    checkpoint yet (it starts over).
    """
    run = open_train_run(run_dir)
    checkpoint, skipped = find_checkpoint(run.path)
    if checkpoint is None:
        if skipped:
            raise InputError(f"{str(run.path)!r} has no intact checkpoint to continue from"
                             f"{_listed(skipped)}; start the run again with --force")
        return None
    for damage in skipped:
        _notify(f"skipping {damage}")
    try:
        _load_into(SequenceModel(run.model), run.path / "init.safetensors")
    except InputError as problem:
        save_weights(run.path / "init.safetensors", _initial(run).state_dict())
        _notify(f"{problem}; rewrote it from the seed")
    state = json.loads((checkpoint / "state.json").read_text())  # checked by its manifest
    if state.get("best") is not None:
        _check_best(run, state["best_step"])
    return checkpoint


def _check_best(run: TrainRun, step: int) -> None:
    path = run.path / "model.safetensors"
    try:
        _load_into(SequenceModel(run.model), path)
        return
    except InputError as problem:
        damage = problem
    source = run.path / "checkpoints" / f"step-{step:08d}"
    if source.is_dir() and verify_checkpoint(source) is None:
        model = SequenceModel(run.model)
        _load_into(model, source / "model.safetensors")
        save_weights(path, model.state_dict())
        _notify(f"{damage}; restored the best weights from checkpoint {source.name}")
        return
    raise InputError(f"{damage}; it held the best weights (step {step}), which no intact "
                     "checkpoint holds: restore the file, or start the run again with --force")


def check_compare_resume(run_dir: Path, cells: dict[Path, TrainConfig]) -> None:
    """Check a comparison and every started cell folder before any cell trains."""
    read_compare_config(run_dir)
    for folder, config in cells.items():
        if holds_run(folder):
            resume_config(folder, config)
            resume_checkpoint(folder)
