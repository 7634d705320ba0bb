"""``rnnlab explore RUN``: write (or serve) the interactive explorer page of a run."""

from __future__ import annotations

from pathlib import Path

import click

from rnnlab._io import InputError
from rnnlab.explore import explore
from rnnlab.report import write_page


@click.command("explore")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--text", help="charlm: text to explore instead of the validation text.")
@click.option("--data", type=click.Path(path_type=Path),
              help="charlm: a text file; forecast: a CSV with the run's columns.")
@click.option("--steps", type=int, default=2000, show_default=True,
              help="Steps of the input to show.")
@click.option("--connect-steps", type=int, default=300, show_default=True,
              help="Steps t whose connectivity ‖∂prediction_t/∂x_s‖ is computed (the first).")
@click.option("--window", type=int, default=100, show_default=True,
              help="Steps s before each t that the connectivity covers.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Page to write (default: explore.html in the run folder).")
@click.option("--force", is_flag=True, help="Overwrite the file given with --out.")
@click.option("--serve", is_flag=True,
              help="Serve the page on 127.0.0.1 instead of writing it (any size).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port for --serve.")
def command(run, text, data, steps, connect_steps, window, out, force, serve, port):
    """Explore the gates, cells and gradients of the run folder RUN in a browser page."""
    explorer = explore(run, text=text, data=data, steps=steps, connect_steps=connect_steps,
                       window=window)
    if serve:
        from rnnlab.explore.serve import make_server

        try:
            server = make_server(explorer.page, port)
        except OSError as err:
            raise InputError(f"cannot serve on 127.0.0.1:{port}: {err.strerror}; choose "
                             f"another --port") from None
        click.echo(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return
    # The run folder's own explore.html is rnnlab's to redraw; a file named with --out is
    # the user's and is overwritten only with --force.
    path = explorer.save(out if out is not None else Path(run) / "explore.html",
                         force=force or out is None)
    click.echo(f"wrote {path}")
    if out is None and (Path(run) / "report.html").is_file():
        click.echo(f"wrote {write_page(run)} (it now links the explorer)")
