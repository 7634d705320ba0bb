"""rnnlab: exact, fast, inspectable recurrent networks.

The public surface: the torch.nn-compatible layers in :mod:`rnnlab.nn` (with gate and
gradient recording, :func:`rnnlab.nn.record`), the NumPy reference math in
:mod:`rnnlab.reference`, backend selection (:func:`use_backend`), and the tools around
the layers — :func:`train`, :func:`compare`, :func:`inspect_run`, :func:`explore`,
:func:`generate` and :func:`predict` — that the ``rnnlab`` command wraps.

Importing rnnlab leaves a one-shot hook that gives ``torch.onnx.export(..., dynamo=True)``
rnnlab's ONNX translations once the exporter loads onnxscript's op table
(:mod:`rnnlab.export.registration`).
"""

from rnnlab._version import __version__
from rnnlab.backends import available_backends, use_backend
from rnnlab.compare import CompareConfig, CompareResult, compare
from rnnlab.explore import explore
from rnnlab.export.registration import register_when_torchlib_loads
from rnnlab.inspect import inspect_run
from rnnlab.training import TrainConfig, TrainResult, train
from rnnlab.use import generate, predict

register_when_torchlib_loads()

__all__ = [
    "CompareConfig",
    "CompareResult",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "available_backends",
    "compare",
    "explore",
    "generate",
    "inspect_run",
    "predict",
    "train",
    "use_backend",
]
