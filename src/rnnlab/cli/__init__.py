"""The ``rnnlab`` command: thin click wrappers over the library functions.

Bad input (anything raising :class:`rnnlab._io.InputError`) prints one line and exits
with status 2 — never a traceback. Damage that a command worked around (a
:class:`rnnlab._io.RunWarning`) prints one ``Warning:`` line, once per command.
"""

from __future__ import annotations

import importlib
import warnings
from contextlib import contextmanager

import click

from rnnlab._io import InputError, RunWarning
from rnnlab._version import __version__


@contextmanager
def _run_warnings_as_lines():
    """Within one command: each RunWarning as one ``Warning:`` line on stderr (no source
    line), each message once; other warnings as usual. Restored afterwards."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.simplefilter("always", RunWarning)

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, RunWarning):
                shown(message, category, filename, lineno, file, line)
            elif str(message) not in seen:
                seen.add(str(message))
                click.echo(f"Warning: {message}", err=True)

        warnings.showwarning = show
        yield


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            with _run_warnings_as_lines():
                return super().invoke(ctx)
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
_COMMANDS = ("compare", "train", "generate", "predict", "inspect", "export")


def _register() -> None:
    for name in _COMMANDS:
        main.add_command(importlib.import_module(f"rnnlab.cli.{name}").command)


_register()
