"""``rnnlab generate RUN``: sample text from a trained character-level language model."""

from __future__ import annotations

from pathlib import Path

import click

from rnnlab.use import generate


@click.command("generate")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--prime", default="", help="Text to start from (default: a newline).")
@click.option("--length", type=int, default=500, show_default=True,
              help="Characters to generate after the prime.")
@click.option("--temperature", type=float, default=0.8, show_default=True,
              help="Sampling temperature (> 0; lower is more conservative).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--cell", help="Which cell's model, when RUN is a comparison of several cells "
                             "(with several seeds: the first seed's).")
def command(run, prime, length, temperature, seed, cell):
    """Print text sampled from the charlm model saved in the run folder RUN."""
    click.echo(generate(run, prime=prime, length=length, temperature=temperature, seed=seed,
                        cell=cell))
