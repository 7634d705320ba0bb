"""``rnnlab inspect RUN``: redraw the gate heatmaps and gradient plots of a saved run."""

from __future__ import annotations

from pathlib import Path

import click

from rnnlab.inspect import inspect_run
from rnnlab.report import build_report
from rnnlab.runs import read_metrics


@click.command("inspect")
@click.argument("run", type=click.Path(path_type=Path))
def command(run):
    """Redraw gate and gradient plots (and the report) for the run folder RUN."""
    read_metrics(run)  # what the report is drawn from: checked before anything is written
    inspect_run(run)
    page = build_report(run)  # takes the figures just drawn
    for png in sorted(run.glob("*.png")):
        click.echo(f"wrote {png}")
    click.echo(f"report: {page}")
