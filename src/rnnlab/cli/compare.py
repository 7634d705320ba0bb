"""``rnnlab compare``: RNN vs LSTM vs GRU under the same conditions, with a report."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import click

from rnnlab._io import InputError
from rnnlab.cli._options import (
    build_train_config,
    check_resume,
    parse_value,
    resolve_resume,
    run_dir,
    saved_folder,
    train_options,
)
from rnnlab.compare import CompareConfig, compare
from rnnlab.runs import read_compare_config, read_sweep_config, run_kind
from rnnlab.sweep import SweepConfig, format_sweep, sweep, sweep_keys
from rnnlab.tasks import CELLS, TASKS
from rnnlab.training.distributed import world


def _cells(text: str) -> tuple[str, ...]:
    cells = tuple(c.strip().lower() for c in text.split(",") if c.strip())
    for c in cells:
        if c not in CELLS:
            raise InputError(
                f"--cells: unknown cell {c!r}; expected a comma list of {','.join(CELLS)}"
            )
    return cells


@click.command("compare")
@click.option("--cells", help="Comma-separated cells to compare, of rnn,lstm,gru,mingru,"
                              "minlstm,lnlstm,lngru (default: rnn,lstm,gru).")
@click.option("--seeds", type=int,
              help="Repeat each cell with this many seeds; mean and spread reported (default 1).")
@click.option("--hidden", type=int, help="Fix every cell's width instead of matching parameters.")
@click.option("--params", type=int, help="Parameter count to match (default: an LSTM's at the "
                                         "task's default width).")
@click.option("--sweep", metavar="KEY=V1,V2,...",
              help="One comparison per value of a task option (e.g. length=10,50,200) or of "
                   "hidden / layers, in subfolders KEY=VALUE; the report plots the metric vs "
                   "the value per cell.")
@train_options
def command(cells, seeds, hidden, params, sweep, **kw):
    """Train RNN, LSTM and GRU side by side and write a report.

    With no options: the adding problem, where a plain RNN stays at chance and LSTM and
    GRU solve it.

    \b
    Every task, its data format, options (-o KEY=VALUE) and defaults: rnnlab tasks
    Ctrl-C (or SIGTERM) saves the step in progress and prints the command that resumes.
    """
    resolve_resume(kw)
    saved = saved_folder(kw)
    if saved is None:
        base = CompareConfig()
    elif run_kind(saved) == "sweep":
        saved_sweep = read_sweep_config(saved)
        base = saved_sweep.compare
        if sweep is None:  # resuming a sweep's folder continues the sweep it holds
            sweep = f"{saved_sweep.key}={','.join(map(str, saved_sweep.values))}"
    else:
        base = read_compare_config(saved)
    given = {"cells": _cells(cells) if cells is not None else None, "seeds": seeds,
             "hidden": hidden, "params": params}
    config = replace(
        base, train=build_train_config(base.train, kw),
        **{k: v for k, v in given.items() if v is not None},
    )
    if sweep is not None:
        _sweep(config, sweep, kw)
        return
    folder = run_dir(kw, f"compare-{config.train.task}")
    check_resume(kw, folder)
    click.get_current_context().meta["rnnlab.run_dir"] = folder  # for an interrupt's hint
    ranks = world()
    result = compare(config, folder, force=kw["force"], resume=kw["resume"],
                     progress=kw["progress"], threads=kw["threads"])
    if ranks.main:
        click.echo(result.table())
        click.echo(f"run folder: {result.run_dir}")
        click.echo(f"report: {result.run_dir / 'report.html'}")
    ranks.close()


def _sweep(config: CompareConfig, text: str, kw: dict) -> None:
    key, sep, values = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        raise InputError(f"--sweep {text!r} is not KEY=V1,V2,...")
    task = config.train.task
    keys = sweep_keys(task)
    if key not in keys:
        raise InputError(f"cannot sweep {key!r} for task {task}; sweepable keys: "
                         f"{', '.join(keys)}")
    defaults = {f.name: f.default for f in dataclasses.fields(TASKS[task].Options)}
    parsed = tuple(parse_value(key, v.strip(), defaults.get(key, 0))
                   for v in values.split(",") if v.strip())
    if world().size > 1:
        raise InputError("--sweep runs in one process; start it without torchrun")
    folder = run_dir(kw, f"sweep-{task}-{key}")
    check_resume(kw, folder)
    click.get_current_context().meta["rnnlab.run_dir"] = folder
    metrics = sweep(SweepConfig(key, parsed, config), folder, force=kw["force"],
                    resume=kw["resume"], progress=kw["progress"], threads=kw["threads"])
    click.echo(format_sweep(metrics))
    click.echo(f"run folder: {folder}")
    click.echo(f"report: {folder / 'report.html'}")
