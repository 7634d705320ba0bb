"""``rnnlab predict RUN``: forecast the rows after a CSV with a trained forecast model."""

from __future__ import annotations

from pathlib import Path

import click

from rnnlab.use import predict


@click.command("predict")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV whose last rows to forecast from (default: the training data).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV to write (default: forecast.csv in the run folder).")
@click.option("--cell", help="Which cell's model, when RUN is a comparison of several cells "
                             "(with several seeds: the first seed's).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def command(run, data, out, cell, force):
    """Write the next HORIZON rows of each forecast column to a CSV file."""
    path = predict(run, data=data, out=out, cell=cell, force=force)
    click.echo(f"wrote {path}")
