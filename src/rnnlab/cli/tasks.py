"""``rnnlab tasks``: every task with its options (-o KEY=VALUE), defaults and data format."""

from __future__ import annotations

import click

from rnnlab.tasks.catalog import describe_tasks


@click.command("tasks")
@click.argument("names", nargs=-1)
def command(names):
    """List the tasks, or describe those NAMES: data, metric, options and their defaults."""
    click.echo(describe_tasks(list(names) or None))
