"""What the layers do while ``torch.export`` traces them (``torch.onnx.export`` included)."""

from __future__ import annotations

import torch


def exporting() -> bool:
    """True while ``torch.export`` traces the layer: the layers then keep the
    differentiable ops (which the ONNX translations know) and, outside Dynamo's own
    tracing (a strict export, which must not call into the import system), make sure
    those translations are registered for plain ``torch.onnx.export(dynamo=True)``."""
    if not torch.compiler.is_exporting():
        return False
    if not torch.compiler.is_dynamo_compiling():
        from rnnlab.export.registration import register_for_export

        register_for_export()
    return True
