"""Per-unit statistics the page ranks units by, and the gate-saturation figures.

Saturation follows Karpathy, Johnson & Fei-Fei (2015): a gate value is left-saturated
below 0.1 and right-saturated above 0.9; tanh quantities (h, g, n) are read on the same
scale through (v + 1) / 2, the unbounded ones (c, h̃) through tanh first. The text
features a unit can be correlated with are the ones that paper and LSTMVis found cells
tracking.
"""

from __future__ import annotations

import numpy as np

from rnnlab.explore.trace import SIGNED, UNBOUNDED

LOW, HIGH = 0.1, 0.9
BINS = 20


def text_features(text: str) -> dict[str, np.ndarray]:
    """Simple per-character features of a text: quotes, brackets, position in the line."""
    quote, depth, column = np.zeros(len(text)), np.zeros(len(text)), np.zeros(len(text))
    inside, level, col = None, 0, 0
    for t, ch in enumerate(text):
        if inside is None and ch in "\"'":
            inside = ch
        elif ch == inside:
            inside = None
        level = level + (ch in "([{") - (ch in ")]}" and level > 0)
        quote[t], depth[t], column[t] = inside is not None, level > 0, col
        col = 0 if ch == "\n" else col + 1
    return {"inside quotes": quote, "inside brackets": depth, "position in line": column}


def unit_scale(q: str, v: np.ndarray) -> np.ndarray:
    """A quantity on the gates' (0, 1) scale (c and h̃ are squashed through tanh first)."""
    if q in UNBOUNDED:
        v = np.tanh(v)
    return (v + 1.0) / 2.0 if q in SIGNED else v


def unit_stats(q: str, v: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, list]:
    """(T, H) values -> ranking statistics, one list of H numbers each."""
    s = unit_scale(q, v)
    centred = v - v.mean(axis=0)
    variance = np.einsum("th,th->h", centred, centred) / len(v)
    out = {"variance": variance, "saturation": ((s < LOW) | (s > HIGH)).mean(axis=0)}
    if features:
        f = np.stack(list(features.values()), axis=1).astype(np.float32)  # (T, K)
        f -= f.mean(axis=0)
        denom = np.sqrt(variance * len(v))[:, None] * np.sqrt((f ** 2).sum(axis=0))[None]
        cov = centred.T @ f  # (H, K)
        r = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
        for k, name in enumerate(features):
            out[f"|correlation| with {name}"] = np.abs(r[:, k])
    return {k: np.round(np.asarray(x, np.float64), 5).tolist() for k, x in out.items()}


def saturation(q: str, v: np.ndarray) -> dict[str, list]:
    """Fraction of steps each unit is left- and right-saturated (Karpathy 2015, fig. 4)."""
    s = unit_scale(q, v)
    return {"low": np.round((s < LOW).mean(axis=0), 4).tolist(),
            "high": np.round((s > HIGH).mean(axis=0), 4).tolist()}


def histogram(v: np.ndarray) -> list[int]:
    """Counts of a gate's values over (T, H) in BINS equal bins of [0, 1]."""
    counts, _ = np.histogram(v, bins=BINS, range=(0.0, 1.0))
    return counts.tolist()
