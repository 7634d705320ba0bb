"""rnnlab: exact, fast, inspectable recurrent networks.

The public surface: the torch.nn-compatible layers in :mod:`rnnlab.nn`, gate and
gradient recording (:func:`rnnlab.nn.record`), the NumPy reference math in
:mod:`rnnlab.reference`, and backend selection (:func:`use_backend`).
"""

from rnnlab._version import __version__
from rnnlab.backends import available_backends, use_backend

__all__ = ["__version__", "available_backends", "use_backend"]
