"""rnnlab: exact, fast, inspectable recurrent networks.

The public surface: the torch.nn-compatible layers in :mod:`rnnlab.nn` (with gate and
gradient recording, :func:`rnnlab.nn.record`), the NumPy reference math in
:mod:`rnnlab.reference`, backend selection (:func:`use_backend`), and the tools around
the layers — :func:`train`, :func:`compare`, :func:`inspect_run`, :func:`explore`,
:func:`generate` and :func:`predict` — that the ``rnnlab`` command wraps.

``import rnnlab`` itself imports neither torch nor the tools: each name above is
imported on first use (PEP 562), so the ``rnnlab`` command can start up under its own
interrupt handling (:mod:`rnnlab.__main__`). ``rnnlab.compare`` is the function, as
documented, also once its module (``rnnlab/compare.py``) has been imported.

Importing rnnlab leaves a one-shot hook that gives ``torch.onnx.export(..., dynamo=True)``
rnnlab's ONNX translations once the exporter loads onnxscript's op table
(:mod:`rnnlab.export.registration`).
"""

import sys
from importlib import import_module
from types import ModuleType

from rnnlab._version import __version__
from rnnlab.export.registration import register_when_torchlib_loads

# Public name -> the module that defines it.
_HOMES = {
    "CompareConfig": "rnnlab.compare",
    "CompareResult": "rnnlab.compare",
    "TrainConfig": "rnnlab.training",
    "TrainResult": "rnnlab.training",
    "available_backends": "rnnlab.backends",
    "compare": "rnnlab.compare",
    "explore": "rnnlab.explore",
    "generate": "rnnlab.use",
    "inspect_run": "rnnlab.inspect",
    "predict": "rnnlab.use",
    "train": "rnnlab.training",
    "use_backend": "rnnlab.backends",
}

__all__ = ["__version__", *sorted(_HOMES)]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


class _Package(ModuleType):
    """The import system binds every submodule it loads as an attribute of its package;
    for ``rnnlab/compare.py`` that would hide the public function ``rnnlab.compare``.
    The module stays reachable as ``sys.modules["rnnlab.compare"]`` and through
    ``from rnnlab.compare import ...``."""

    def __setattr__(self, name: str, value) -> None:
        if name in _HOMES and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
register_when_torchlib_loads()
