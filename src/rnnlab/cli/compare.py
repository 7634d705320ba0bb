"""``rnnlab compare``: RNN vs LSTM vs GRU under the same conditions, with a report."""

from __future__ import annotations

from dataclasses import replace

import click

from rnnlab._io import InputError
from rnnlab.cli._options import (
    build_train_config,
    check_resume,
    resolve_resume,
    run_dir,
    saved_folder,
    train_options,
)
from rnnlab.compare import CompareConfig, compare
from rnnlab.runs import read_compare_config
from rnnlab.tasks import CELLS
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
                              "minlstm (default: rnn,lstm,gru).")
@click.option("--seeds", type=int,
              help="Repeat each cell with this many seeds; mean and spread reported (default 1).")
@click.option("--hidden", type=int, help="Fix every cell's width instead of matching parameters.")
@click.option("--params", type=int, help="Parameter count to match (default: an LSTM's at the "
                                         "task's default width).")
@train_options
def command(cells, seeds, hidden, params, **kw):
    """Train RNN, LSTM and GRU side by side and write a report.

    With no options: the adding problem, where a plain RNN stays at chance and LSTM and
    GRU solve it.

    \b
    Every task, its data format, options (-o KEY=VALUE) and defaults: rnnlab tasks
    Ctrl-C (or SIGTERM) saves the step in progress and prints the command that resumes.
    """
    resolve_resume(kw)
    saved = saved_folder(kw)
    base = read_compare_config(saved) if saved is not None else CompareConfig()
    given = {"cells": _cells(cells) if cells is not None else None, "seeds": seeds,
             "hidden": hidden, "params": params}
    config = replace(
        base, train=build_train_config(base.train, kw),
        **{k: v for k, v in given.items() if v is not None},
    )
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
