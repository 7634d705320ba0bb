"""The ``rnnlab`` command: thin click wrappers over the library functions.

Bad input (anything raising :class:`rnnlab._io.InputError`) prints one line and exits
with status 2 — never a traceback. Warnings print as one ``Warning:`` line each, once
per command (damage a command worked around is a :class:`rnnlab._io.RunWarning`). An
interrupt prints one line and exits 130 (SIGINT) or 143 (SIGTERM); during training it
first saves a checkpoint and prints the command that continues the run.
"""

from __future__ import annotations

import importlib
import signal
import warnings
from contextlib import contextmanager

import click

from rnnlab._io import InputError, RunWarning
from rnnlab._version import __version__
from rnnlab.cli._environment import check_environment
from rnnlab.cli._resume import resume_command
from rnnlab.training.interrupt import TrainingInterrupted


def _interrupted(ctx: click.Context, err: TrainingInterrupted) -> None:
    """Say where the run stopped and the exact command that continues it."""
    run_dir = ctx.meta.get("rnnlab.run_dir", err.run_dir)
    name = signal.Signals(err.signum).name
    if err.step is not None:
        head = f"Interrupted by {name}: step {err.step} is saved in {run_dir}."
    else:
        head = f"Interrupted by {name} twice: {run_dir} continues from its last checkpoint."
    click.echo(f"{head} Continue with:", err=True)
    click.echo("  " + resume_command("rnnlab", ctx.meta.get("rnnlab.argv", []), run_dir),
               err=True)
    ctx.exit(err.exit_code)


@contextmanager
def _warnings_as_lines():
    """Within one command: each warning as one ``Warning:`` line on stderr (no source
    line), each message once; RunWarnings always shown. Restored afterwards."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunWarning)

        def show(message, category, filename, lineno, file=None, line=None):
            if str(message) not in seen:
                seen.add(str(message))
                click.echo(f"Warning: {message}", err=True)

        warnings.showwarning = show
        yield


def _stopped() -> click.exceptions.Exit:
    """Ctrl-C outside a training loop (start-up, a report): nothing to save."""
    click.echo("Interrupted.", err=True)
    return click.exceptions.Exit(130)


class _Group(click.Group):
    def parse_args(self, ctx, args):
        ctx.meta["rnnlab.argv"] = list(args)  # for the resume hint after an interrupt
        try:
            return super().parse_args(ctx, args)
        except KeyboardInterrupt:
            raise _stopped() from None

    def invoke(self, ctx):
        try:
            with _warnings_as_lines():
                check_environment()
                return super().invoke(ctx)
        except TrainingInterrupted as err:
            _interrupted(ctx, err)
        except KeyboardInterrupt:
            raise _stopped() from None
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)
        except click.UsageError as err:  # bad option syntax: one line too, with a pointer
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            click.echo(f"Error: {err.format_message()} (see '{where} --help')", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnlab")
def main() -> None:
    """Train, compare and inspect RNN, LSTM and GRU networks."""


# One module per subcommand, each defining ``command``; a new subcommand adds its name here.
_COMMANDS = ("compare", "train", "tasks", "generate", "predict", "inspect", "export",
             "explore")


def _register() -> None:
    for name in _COMMANDS:
        main.add_command(importlib.import_module(f"rnnlab.cli.{name}").command)


_register()
