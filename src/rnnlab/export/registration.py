"""Make plain ``torch.onnx.export(..., dynamo=True)`` translate rnnlab's ops by itself.

torch's exporter builds its table of ONNX translations afresh for every export, from
torch's own private list and from onnxscript's torchlib registry
(``onnxscript.function_libs.torch_lib.registration.default_registry``), the registry
that also gives torchvision's ops their translations. torch offers a third-party op
library no public hook besides the per-call ``custom_translation_table``, so rnnlab adds
its translations (:mod:`rnnlab.export.onnx`: rnn, lstm, gru, mingru, minlstm, lnlstm,
lngru, lstm_masked, gru_masked) to onnxscript's registry; every export built afterwards
finds them. Verified with torch 2.13 and onnxscript 0.7
(``tests/export/test_torch_onnx_export.py`` fails if a release stops reading it).

When: onnxscript is an optional extra (``rnnlab[onnx]``) and takes about a second to
import, so ``import rnnlab`` never imports it. :func:`register_when_torchlib_loads`
(called once by ``rnnlab/__init__.py``) registers at once if torchlib's op table
(``onnxscript.function_libs.torch_lib.ops``) is already imported, and otherwise leaves a
one-shot import hook that registers right after that module first runs — which happens
when torch's exporter asks onnxscript for its table, just before it reads the registry.
The trigger is that module and not ``onnxscript`` itself because rnnlab's own ONNX code
imports onnxscript (a callback then would meet it half-imported); nothing of rnnlab's
imports torchlib's op table. Without onnxscript installed nothing is registered and
nothing is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable

__all__ = ["register_translations", "register_when_torchlib_loads"]

_TRIGGER = "onnxscript.function_libs.torch_lib.ops"


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


def _register_or_warn() -> None:
    """The import hook's callback. It runs inside the import of another package's module,
    so any failure becomes a warning: it must not break that import."""
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


def register_when_torchlib_loads() -> None:
    """Register now if torchlib's op table is imported, else right after its first import."""
    if _TRIGGER in sys.modules:
        _register_or_warn()
    elif not any(isinstance(f, AfterImport) and f.name == _TRIGGER for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(_TRIGGER, _register_or_warn))


class AfterImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: calls ``callback()`` once module ``name`` has executed.

    On the first import of ``name`` it takes itself off ``sys.meta_path``, finds the module
    through the remaining finders, and wraps the loader so that the callback runs right
    after the module's code (the module keeps its own loader). It finds nothing itself.
    """

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name or self not in sys.meta_path:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenCall(spec.loader, self.callback)
        return spec


class _ThenCall(importlib.abc.Loader):
    """Runs ``loader``'s module, then ``callback()``; the module gets ``loader`` back."""

    def __init__(self, loader, callback: Callable[[], None]) -> None:
        self.loader = loader
        self.callback = callback

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.callback()
