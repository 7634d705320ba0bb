"""The environment variables that choose how models run, checked before a command starts.

A bad ``RNNLAB_BACKEND`` or ``RNNLAB_CPU_*`` switch is one ``Error:`` line naming the variable,
its value and the valid ones (exit 2), before the command writes anything — not a
traceback from the first model call, halfway into a new run folder.
"""

from __future__ import annotations

import os
from importlib import import_module

import torch

from rnnlab import backends
from rnnlab._io import InputError

# What the commands' models run on (training, inspection, sampling, export).
DEVICE, DTYPE = torch.device("cpu"), torch.float32
CPU_ISA_VAR = "RNNLAB_CPU_ISA"  # read by rnnlab.backends.cpu._isa, which cannot load with a bad one
# Read by rnnlab.backends.cpu._switches likewise.
CPU_SWITCH_VARS = (CPU_ISA_VAR, "RNNLAB_CPU_THREADS", "RNNLAB_CPU_TILES")


def _check_backend() -> None:
    try:
        name = backends.current_backend_name()
    except ValueError as err:  # an unknown name
        raise InputError(str(err)) from None
    if name is not None and not backends.can_run(name, DEVICE, DTYPE):
        usable = [n for n in sorted(backends.available_backends())
                  if backends.can_run(n, DEVICE, DTYPE)]
        raise InputError(
            f"{backends.ENV_VAR}={name}: that backend cannot run {DTYPE} tensors on {DEVICE} "
            f"here (rnnlab's commands need it); unset it or set one of {', '.join(usable)}"
        )


def _check_cpu_isa() -> None:
    """The cpu backend reads its switches (``RNNLAB_CPU_ISA``, ...) once per process, as
    it loads."""
    try:
        import_module("rnnlab.backends.cpu")
    except ImportError:  # no cpu backend here (Numba missing): nothing to check
        return
    except ValueError as err:  # IsaError or SwitchError: a bad value
        raise InputError(str(err)) from None


def check_environment() -> None:
    """InputError when a ``RNNLAB_CPU_*`` switch or ``RNNLAB_BACKEND`` holds a value that
    cannot run."""
    if any(var in os.environ for var in CPU_SWITCH_VARS):
        _check_cpu_isa()  # first: checking a forced cpu backend loads it
    _check_backend()
