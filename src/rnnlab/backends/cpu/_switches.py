"""The cpu backend's switches: environment variables that turn an optional piece off.

Each is read once, as the backend loads; a value that is not one of those listed is a
:class:`SwitchError` naming the variable, its value and the valid ones (the CLI prints
it as one line before a command starts).

- ``RNNLAB_CPU_THREADS=n`` (n ≥ 1): at most n threads for one call — the split by
  samples and the split by units (:mod:`._parallel`); ``1`` runs every call on the
  calling thread alone. Unset: torch's setting (``torch.get_num_threads()``).
- ``RNNLAB_CPU_TILES=0``: the per-step product through the plain compiled loop (the one
  B = 1 and float64 use) instead of the register tiles (:mod:`._tile`); ``1`` (the
  default): the tiles, for float32 at B > 1.
- ``RNNLAB_CPU_ISA=avx512|avx2|portable|auto``: which variant of the tiles runs
  (:mod:`._isa`, which reads it).
"""

from __future__ import annotations

import os

THREADS_VAR = "RNNLAB_CPU_THREADS"
TILES_VAR = "RNNLAB_CPU_TILES"


class SwitchError(ValueError):
    """A switch of the cpu backend holds a value it does not take."""


def _threads(value: str | None) -> int | None:
    """The thread cap ``RNNLAB_CPU_THREADS`` sets (None: torch's setting)."""
    if value is None or not value.strip():
        return None
    try:
        cap = int(value)
    except ValueError:
        cap = 0
    if cap < 1:
        raise SwitchError(f"{THREADS_VAR}={value!r} is not a thread count; expected a whole "
                          "number of at least 1 (1: no split across threads), or unset")
    return cap


def _tiles(value: str | None) -> bool:
    """Whether ``RNNLAB_CPU_TILES`` leaves the register tiles on."""
    key = (value or "").strip()
    if key not in ("", "0", "1"):
        raise SwitchError(f"{TILES_VAR}={value!r} is not a switch; expected 0 (the plain "
                          "compiled loop) or 1 (the register tiles, the default)")
    return key != "0"


THREAD_CAP = _threads(os.environ.get(THREADS_VAR))
TILES = _tiles(os.environ.get(TILES_VAR))
