"""``rnnlab train``: one cell on one task, with checkpoints, resume and a report."""

from __future__ import annotations

import click

from rnnlab.cli._options import (
    build_train_config,
    check_resume,
    resolve_resume,
    run_dir,
    saved_folder,
    train_options,
)
from rnnlab.report import build_report
from rnnlab.runs import resume_config
from rnnlab.tasks import CELLS
from rnnlab.training import train
from rnnlab.training.distributed import world
from rnnlab.training.threads import thread_policy


@click.command("train")
@click.option("--cell", type=click.Choice(CELLS), help="Recurrent cell (default: lstm).")
@click.option("--hidden", type=int, help="Hidden size (default: the task's).")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Draw the plots and report.html after training.")
@train_options
def command(cell, hidden, report, **kw):
    """Train one recurrent network on a task and write a run folder with a report.

    \b
    Every task, its data format, options (-o KEY=VALUE) and defaults: rnnlab tasks
    Ctrl-C (or SIGTERM) saves the step in progress and prints the command that resumes.
    """
    given = {k: v for k, v in (("cell", cell), ("hidden", hidden)) if v is not None}
    resolve_resume(kw)
    saved = saved_folder(kw)
    if saved is not None:  # --resume: what the run started with, plus what is given now
        config = build_train_config(resume_config(saved, None), kw, **given)
    else:
        config = build_train_config(None, kw, **given)
    folder = run_dir(kw, f"{config.task}-{config.cell}")
    check_resume(kw, folder)
    click.get_current_context().meta["rnnlab.run_dir"] = folder  # for an interrupt's hint
    result = train(config, folder, force=kw["force"], resume=kw["resume"],
                   progress=kw["progress"], threads=kw["threads"])
    ranks = world()
    if ranks.main:  # under torchrun: rank 0 reports
        if report:
            with thread_policy(config.task, kw["threads"]):
                build_report(result.run_dir)
        click.echo(
            f"{config.cell}: best validation {result.metric} {result.best:.4g} at step "
            f"{result.best_step} ({result.task.baseline} {result.chance:.4g}); "
            f"{result.steps} steps in {result.seconds:.1f}s; {result.stopped}"
        )
        click.echo(f"run folder: {result.run_dir}")
        if report:
            click.echo(f"report: {result.run_dir / 'report.html'}")
    ranks.close()
