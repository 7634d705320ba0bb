"""The per-sample passes of recurrent dropout and zoneout that the LSTM and GRU loops
(:mod:`.lstm`, :mod:`.gru`) share, in the symbols of :mod:`rnnlab.reference.lstm_masked`
and :mod:`rnnlab.reference.gru_masked`: d the recurrent dropout multiplier, k a zoneout
share. A zoneout share is a (T, B, ·) array or, in the eval form, one constant p
(:class:`._host.MaskArrays`), which a loop spreads into one row it reads at every step
(:func:`keep_row`): the passes read a row either way, with no branch per element.
"""

from __future__ import annotations

from numba import njit

from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one


@njit(inline="always")
def keep_row(keep, t, b, constant):
    """Sample b's zoneout share at step t: its row of ``keep`` (T, B, ·), or ``constant``
    (the eval form's p in every entry) when ``keep`` is empty."""
    return keep[t, b] if keep.shape[0] > 0 else constant


@kernel(**KERNEL_OPTIONS)
def dropped(drop, h, u):
    """u ← d ⊙ h for one sample (d = ``drop``)."""
    for j in range(h.shape[0]):
        u[j] = drop[j] * h[j]


@kernel(**KERNEL_OPTIONS)
def zone(previous, new, keep, out):
    """out ← k ⊙ previous + (1 - k) ⊙ new for one sample (k = ``keep``); ``out`` may be
    ``previous``."""
    u = one(new)
    for j in range(new.shape[0]):
        k = keep[j]
        out[j] = k * previous[j] + (u - k) * new[j]


@kernel(**KERNEL_OPTIONS)
def unzone(grad, keep, to_new, to_previous):
    """A state's gradient split for one sample: to_new ← (1 - k) ⊙ grad (what reaches
    the candidate), to_previous ← k ⊙ grad (what reaches the previous state directly),
    k = ``keep``. ``to_previous`` may be ``grad``."""
    u = one(grad)
    for j in range(grad.shape[0]):
        g = grad[j]
        k = keep[j]
        to_new[j] = (u - k) * g
        to_previous[j] = k * g


@kernel(**KERNEL_OPTIONS)
def add_dropped(drop, v, out):
    """out += d ⊙ v for one sample (out += v when ``drop`` is empty)."""
    if drop.shape[0] > 0:
        for j in range(v.shape[0]):
            out[j] += drop[j] * v[j]
    else:
        for j in range(v.shape[0]):
            out[j] += v[j]
