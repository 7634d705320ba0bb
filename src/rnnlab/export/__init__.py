"""Export and interop: ONNX export with native recurrent operators, and weight converters.

The converters (:mod:`rnnlab.export.convert`) need NumPy and torch; the ONNX functions
need the ``onnx`` extra (onnx, onnxscript, onnxruntime). Both are imported on first use,
so that ``import rnnlab``, which imports :mod:`rnnlab.export.registration` (that makes
plain ``torch.onnx.export(..., dynamo=True)`` use the same translations), stays light.
"""

_CONVERT_NAMES = (
    "from_char_rnn",
    "from_haste",
    "from_haste_layer_norm_gru",
    "from_haste_layer_norm_lstm",
    "from_keras",
    "from_onnx_weights",
    "from_torch_nn",
    "to_char_rnn",
    "to_haste",
    "to_haste_layer_norm_gru",
    "to_haste_layer_norm_lstm",
    "to_keras",
    "to_onnx_weights",
    "to_torch_nn",
)

_ONNX_NAMES = ("ExportError", "to_onnx", "translation_table")

__all__ = [*_ONNX_NAMES, *_CONVERT_NAMES]


def __getattr__(name: str):
    if name in _CONVERT_NAMES:
        from rnnlab.export import convert

        return getattr(convert, name)
    if name in _ONNX_NAMES:
        try:
            from rnnlab.export import onnx as _onnx
        except ImportError as error:
            raise ImportError(
                f"rnnlab.export.{name} needs the ONNX exporter's packages (onnx, onnxscript, "
                f"onnxruntime): pip install 'rnnlab[onnx]' ({error})"
            ) from error
        return getattr(_onnx, name)
    raise AttributeError(f"module 'rnnlab.export' has no attribute {name!r}")
