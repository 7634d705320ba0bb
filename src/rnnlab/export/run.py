"""Export a trained run's model to ONNX, with a numerical check of the exported graph.

``export_run(RUN, "model.onnx")`` rebuilds the model of a ``rnnlab train`` run (or one
cell of a comparison: ``cell=``), exports it with :func:`rnnlab.export.to_onnx` on an example
batch drawn from the run's own task shapes, runs the file in onnxruntime on a second,
differently shaped batch, and refuses to leave a file whose outputs differ from the
PyTorch model's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from rnnlab._io import InputError
from rnnlab.runs import load_model, pick_run

__all__ = ["export_run"]

_TOLERANCE = 1e-4  # float32 outputs of the same model, relative to their largest magnitude


def _example(config, batch: int, steps: int, gen: torch.Generator):
    if config.embed_dim:
        return torch.randint(0, config.input_size, (batch, steps), generator=gen)
    return torch.randn(batch, steps, config.input_size, generator=gen)


def export_run(
    run_dir: str | os.PathLike,
    onnx_path: str | os.PathLike,
    *,
    with_lengths: bool = False,
    force: bool = False,
    cell: str | None = None,
) -> Path:
    """Write the run's model as ONNX to ``onnx_path`` and return the path.

    The graph takes ``x`` (B, T, F) features or (B, T) token ids — batch and time are
    symbolic — and, with ``with_lengths``, per-sample ``lengths`` (B,). It returns the
    model's prediction and final recurrent state. An existing file is only replaced
    with ``force``. ``cell`` chooses the model of a comparison of several cells.
    """
    from rnnlab.export import ExportError, to_onnx

    target = Path(onnx_path)
    if target.exists() and not force:
        raise InputError(f"{str(target)!r} already exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise InputError(f"the folder {str(target.parent)!r} does not exist")
    model = load_model(pick_run(run_dir, cell))
    config = model.config
    gen = torch.Generator().manual_seed(0)
    example = _example(config, 3, 7, gen)
    kwargs = {"lengths": torch.tensor([7, 5, 2])} if with_lengths else {}
    input_names = ["x", "lengths"] if with_lengths else ["x"]
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        draft = Path(scratch) / target.name
        try:
            program = to_onnx(model, (example,), draft, example_kwargs=kwargs,
                              input_names=input_names)
        except ExportError as error:
            raise InputError(f"cannot export this run to ONNX: {error}") from error
        # A second batch of another shape proves the graph generalises and is exact.
        check = _example(config, 5, 11, gen)
        check_lengths = torch.tensor([11, 3, 8, 1, 6])
        with torch.no_grad():
            expected = model(check, lengths=check_lengths if with_lengths else None)
        feeds = [check, check_lengths] if with_lengths else [check]
        got = program(*feeds)
        want = [expected[0], *(expected[1] if isinstance(expected[1], tuple) else (expected[1],))]
        for name, a, b in zip(("prediction", "h_n", "c_n"), got, want, strict=False):
            a, b = np.asarray(a.detach() if isinstance(a, torch.Tensor) else a), b.numpy()
            err = np.abs(a - b).max() / max(np.abs(b).max(), 1.0)
            if not err <= _TOLERANCE:
                raise RuntimeError(
                    f"the exported graph's {name} differs from the model's by {err:.2e} "
                    "(relative); the file was not written — please report this"
                )
        os.replace(draft, target)
    return target
