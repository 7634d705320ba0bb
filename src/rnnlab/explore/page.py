"""The explorer page: one HTML file, the package's assets inlined, the data quantised.

Activations are stored per (model, layer, quantity) as one uint8 row per unit (its T
steps), scaled per unit between that unit's minimum and maximum; the page decodes a
unit's row only when a view needs it. Embedded, each row is a base64 string inside a
``<script type="application/octet-stream">`` block; served (``--serve``), the page
fetches ``data/<model>/<layer>/<quantity>/<unit>`` from the server instead. The
connectivity rows are scaled per target step (each row's maximum is 255); charlm models
carry their weights as float32 for the page's sampler. ``<layer>`` indexes a model's
traced layers: the forward direction's, then a bidirectional model's reverse ones (each
layer's metadata names its ``layer`` number and ``direction``).
"""

from __future__ import annotations

import base64
import json
import re
from importlib import resources

import numpy as np

from rnnlab._io import InputError
from rnnlab.explore import stats
from rnnlab.explore.data import ExploreData
from rnnlab.explore.trace import SIGNED, UNBOUNDED

# Bytes of quantised activations a page embeds at most; above it, --serve.
EMBED_LIMIT = 48 * 2**20
# The gates whose saturation view 5 plots, and those it draws a histogram of (what each
# cell keeps of h_{t−1} or c_{t−1}: the forget gate, the GRUs' update gate z, minLSTM's f').
GATES = {"i", "f", "o", "r", "z", "f_norm"}
KEEP_GATES = {"f", "z", "f_norm"}


def quantise(v: np.ndarray) -> tuple[np.ndarray, list, list]:
    """(T, H) float -> (H, T) uint8 and the per-unit lo, hi."""
    lo, hi = v.min(axis=0), v.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((v - lo) / span * 255.0).astype(np.uint8).T.copy()
    return q, lo.astype(np.float64).tolist(), hi.astype(np.float64).tolist()


def payload_bytes(data: ExploreData) -> int:
    return sum(v.size for m in data.models for layer in m.layers for v in layer.values())


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


class Page:
    """The page's metadata and quantised rows; ``html()`` writes it, ``row()`` serves it."""

    def __init__(self, data: ExploreData):
        self.data = data
        self.rows: dict[str, np.ndarray] = {}  # "m/l/q" -> (H, T) uint8
        features = (stats.text_features(data.text) if data.text is not None else
                    {n: data.series[:, k].astype(np.float64) for k, n in enumerate(data.names)})
        self.meta = {
            "task": data.task, "source": data.source, "steps": data.steps,
            "text": data.text, "vocab": data.vocab, "names": data.names, "window": data.window,
            "notes": data.notes, "features": list(features),
            "signed": sorted(SIGNED), "unbounded": sorted(UNBOUNDED),
            "series": None if data.series is None else np.round(
                data.series.T.astype(np.float64), 4).tolist(),
            "models": [self._model(m, k, features) for k, m in enumerate(data.models)],
        }

    def _model(self, m, k: int, features) -> dict:
        layers = []
        for l_index, (layer, key) in enumerate(zip(m.layers, m.layer_keys(), strict=True)):
            info = {"quantities": list(layer), "hidden": next(iter(layer.values())).shape[1],
                    "layer": int(key[1:].removesuffix("_reverse")),
                    "direction": "reverse" if key.endswith("_reverse") else "forward",
                    "lo": {}, "hi": {}, "stats": {}, "saturation": {}, "histogram": {}}
            for q, v in layer.items():
                self.rows[f"{k}/{l_index}/{q}"], info["lo"][q], info["hi"][q] = quantise(v)
                info["stats"][q] = stats.unit_stats(q, v, features)
                if q in GATES or (m.cell == "rnn" and q == "h"):
                    info["saturation"][q] = stats.saturation(q, v)
                if q in KEEP_GATES:
                    info["histogram"][q] = stats.histogram(v)
            layers.append(info)
        out = {"name": m.name, "cell": m.cell, "layers": layers, "connectivity": None,
               "weights": None, "zoneout": m.zoneout}
        if m.connectivity is not None:
            c = m.connectivity
            scale = c.max(axis=1, keepdims=True)
            q = np.rint(c / np.where(scale > 0, scale, 1.0) * 255.0).astype(np.uint8)
            out["connectivity"] = {"targets": int(c.shape[0]), "window": int(c.shape[1]),
                                   "data": _b64(q)}
        if m.weights is not None:
            out["weights"] = {n: {"shape": list(w.shape), "data": _b64(w.astype("<f4"))}
                              for n, w in m.weights.items()}
        return out

    def row(self, key: str, unit: int) -> bytes:
        return self.rows[key][unit].tobytes()

    def html(self, *, serve: bool = False, limit: int | None = None) -> str:
        """The page; embedded unless ``serve``; over ``limit`` bytes embedded: an error."""
        limit = EMBED_LIMIT if limit is None else limit
        size = sum(r.size for r in self.rows.values())
        if not serve and size > limit:
            raise InputError(
                f"the activations take {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB "
                f"a page embeds; explore fewer steps (--steps) or serve it with --serve")
        meta = json.dumps({**self.meta, "serve": serve}, separators=(",", ":"))
        blocks = [] if serve else [
            f'<script type="application/octet-stream" id="rows-{key.replace("/", "-")}">'
            + " ".join(base64.b64encode(r.tobytes()).decode("ascii") for r in rows)
            + "</script>"
            for key, rows in self.rows.items()
        ]
        assets = resources.files("rnnlab.explore") / "assets"
        parts = {"STYLE": (assets / "explore.css").read_text(encoding="utf-8"),
                 "META": meta.replace("<", "\\u003c"),  # nothing in it can close the script
                 "ROWS": "\n".join(blocks),
                 "SCRIPT": (assets / "explore.js").read_text(encoding="utf-8")}
        template = (assets / "page.html").read_text(encoding="utf-8")
        return re.sub(r"<!--(STYLE|META|ROWS|SCRIPT)-->", lambda m: parts[m.group(1)], template)
