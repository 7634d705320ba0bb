"""Make plain ``torch.onnx.export(..., dynamo=True)`` translate rnnlab's ops by itself.

torch's exporter builds its table of ONNX translations afresh for every export, from
torch's own private list and from onnxscript's torchlib registry
(``onnxscript.function_libs.torch_lib.registration.default_registry``), the registry
that also gives torchvision's ops their translations. torch offers a third-party op
library no public hook besides the per-call ``custom_translation_table``, so rnnlab adds
its three translations (:mod:`rnnlab.export.onnx`) to onnxscript's registry; every
export built afterwards finds them. Verified with torch 2.13 and onnxscript 0.7
(``tests/export/test_torch_onnx_export.py`` fails if a release stops reading it).

When: onnxscript is an optional extra (``rnnlab[onnx]``) and takes about a second to
import, so ``import rnnlab`` never imports it. The layers call
:func:`register_for_export` while ``torch.export`` traces them
(``torch.compiler.is_exporting()``) — which ``torch.onnx.export(dynamo=True)`` does
before it builds its table — and it registers once per process, if onnxscript is
installed. Nothing else in the process changes.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings

__all__ = ["register_for_export", "register_translations"]


def register_translations() -> None:
    """Add rnnlab's ONNX translations to onnxscript's torchlib registry (idempotent).

    Raises ImportError naming the ``rnnlab[onnx]`` extra when onnxscript is missing or
    no longer has the registry this relies on.
    """
    try:
        from onnxscript.function_libs.torch_lib.registration import default_registry, torch_op
    except ImportError as error:
        raise ImportError(
            "registering rnnlab's ONNX translations needs onnxscript's torchlib registry "
            "(onnxscript.function_libs.torch_lib.registration, onnxscript >= 0.7): "
            f"pip install 'rnnlab[onnx]' ({error})"
        ) from error
    from rnnlab.export.onnx import translation_table

    for op, translation in translation_table().items():
        name = op.name()  # "rnnlab::lstm": torchlib names default overloads without ".default"
        if name not in default_registry:
            torch_op(name, trace_only=True)(translation)


@functools.cache
def register_for_export() -> None:
    """Register the translations once per process where onnxscript is installed; called by
    the layers while ``torch.export`` traces them. A failure warns (the export itself may
    not be headed for ONNX), naming the fallbacks."""
    if importlib.util.find_spec("onnxscript") is None:
        return
    try:
        register_translations()
    except Exception as error:
        warnings.warn(
            f"rnnlab could not register its ONNX translations ({error}); plain "
            "torch.onnx.export(..., dynamo=True) will not know rnnlab's layers. Use "
            "rnnlab.export.to_onnx, or pass "
            "custom_translation_table=rnnlab.export.translation_table().",
            RuntimeWarning,
            stacklevel=2,
        )
