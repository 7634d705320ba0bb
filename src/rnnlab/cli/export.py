"""``rnnlab export RUN --onnx FILE``: a trained run's model as ONNX (native RNN nodes, or
standard operators and a Scan for the cells that ONNX's RNN nodes cannot express)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--onnx", "onnx_path", required=True, type=click.Path(path_type=Path),
              help="Where to write the ONNX model (native LSTM/GRU/RNN operators; min and "
                   "layer-normalised cells and zoneout: standard operators and a Scan).")
@click.option("--lengths/--no-lengths", default=False, show_default=True,
              help="Give the graph a per-sample lengths input (B,) for padded batches.")
@click.option("--cell", help="Which cell's model, when RUN is a comparison of several cells.")
@click.option("--force", is_flag=True, help="Replace an existing file at --onnx.")
def command(run, onnx_path, lengths, cell, force):
    """Export the model of the run folder RUN to ONNX, checked in onnxruntime."""
    from rnnlab.export.run import export_run

    path = export_run(run, onnx_path, with_lengths=lengths, force=force, cell=cell)
    click.echo(f"wrote {path} (checked against the PyTorch model in onnxruntime)")
