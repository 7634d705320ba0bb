"""Weight converters between rnnlab (torch.nn's layout) and the layouts in circulation.

rnnlab stores weights exactly as torch.nn does: per layer k and direction (suffix
``_reverse``), ``weight_ih_l{k}`` (G·H, I), ``weight_hh_l{k}`` (G·H, H) and two biases
``bias_ih_l{k}``, ``bias_hh_l{k}`` (G·H,), with the gate blocks stacked in the order

    LSTM  i, f, g, o          GRU  r, z, n (reset after the recurrent matmul by default)

Each converter is one call each way. ``to_<format>(layer)`` returns NumPy arrays named as
the other framework names them, one dict per layer and direction (torch.nn's order:
l0, l0_reverse, l1, ...) except ONNX, which stacks the directions of a layer; ``list(d.values())``
is the order of Keras' ``get_weights()``. ``from_<format>(layer, weights)`` loads such dicts
into an existing rnnlab (or torch.nn) layer in place and returns it. Shapes are checked,
and a layout that cannot express the layer (e.g. no projection) is refused by name.

Conventions (H = hidden size, I = input size; "x·K" means the kernel is (I, G·H)):

=========  ==========================================================================
torch.nn   identity: :func:`to_torch_nn` / :func:`from_torch_nn` copy the state_dict.
Keras      LSTM kernel (I,4H), recurrent_kernel (H,4H), gates i,f,c,o (c = torch's g),
           one bias (4H,) = b_ih + b_hh. GRU kernel (I,3H), recurrent_kernel (H,3H),
           gates z,r,h; ``reset_after=True``: bias (2,3H) = [input bias; recurrent
           bias], torch's GRU exactly; ``reset_after=False``: one bias (3H,). SimpleRNN
           kernel (I,H), recurrent_kernel (H,H), bias (H,).
ONNX       per layer W (D,G·H,I), R (D,G·H,H), B (D,2·G·H) = [Wb, Rb]; gates i,o,f,c
           (LSTM), z,r,h (GRU; ``linear_before_reset=1`` is torch's reset_after).
Haste      LSTM kernel (I,4H), recurrent_kernel (H,4H), gates i,g,f,o, one bias (4H,).
           GRU kernel (I,3H), recurrent_kernel (H,3H), gates z,r,h, bias and
           recurrent_bias (3H,) (reset after the matmul, like torch).
           LayerNormLSTM (rnnlab's ``LSTM(layer_norm=True)``): the LSTM's kernel,
           recurrent_kernel and bias, gamma (2,4H) = [γ_ih; γ_hh] in the gate order
           i,g,f,o, gamma_h = γ_c and beta_h = β_c (H,). LayerNormGRU (``GRU(layer_norm=
           True)``): the GRU's, and gamma (2,3H) in z,r,h. Each of Haste's layers is one
           direction of one layer.
char-rnn   Karpathy's LSTM.lua: i2h = Linear(I,4H), h2h = Linear(H,4H), torch-style
           (out, in) weights, gates i,f,o,g; ``h2h.bias`` is optional (some versions
           have none).
=========  ==========================================================================

A single bias where torch has two is their sum (exact function, float32 rounding of the
sum); loading it back puts it in ``bias_ih`` and zeros in ``bias_hh``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from rnnlab.export import _CONVERT_NAMES
from rnnlab.nn.modules import GRU, LSTM, RNN, RNNBase

__all__ = list(_CONVERT_NAMES)  # the package's list, which it serves lazily

# For each format, the torch.nn gate block found at each position of the format's order.
_KERAS = {"lstm": (0, 1, 2, 3), "gru": (1, 0, 2), "rnn": (0,)}  # i,f,c,o / z,r,h
_ONNX = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}  # i,o,f,c / z,r,h
_HASTE = {"lstm": (0, 2, 1, 3), "gru": (1, 0, 2)}  # i,g,f,o / z,r,h
_CHAR_RNN = {"lstm": (0, 1, 3, 2)}  # i,f,o,g

_TORCH_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_RNNLAB_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


# --------------------------------------------------------------------------- helpers


def _family(layer: nn.Module) -> str:
    """'lstm', 'gru' or 'rnn' for an rnnlab or torch.nn recurrent layer."""
    if isinstance(layer, RNNBase) and layer.layer_norm:
        raise ValueError(
            "the layer has layer_norm=True, which only Haste's LayerNorm layouts hold: use "
            "to_/from_haste_layer_norm_lstm or to_/from_haste_layer_norm_gru"
        )
    if isinstance(layer, RNNBase) and layer.family in _RNNLAB_CLASSES:
        return layer.family  # not MinGRU/MinLSTM: no converter knows their layout yet
    if isinstance(layer, nn.RNNBase):
        return {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}[layer.mode]
    raise TypeError(
        "layer must be an rnnlab.nn RNN/LSTM/GRU or a torch.nn RNN/LSTM/GRU, got "
        f"{type(layer).__name__}"
    )


def _reset_after(layer: nn.Module) -> bool:
    return getattr(layer, "reset_after", True)


def _nonlinearity(layer: nn.Module) -> str:
    return getattr(layer, "nonlinearity", "tanh")


def _suffixes(layer: nn.Module) -> list[str]:
    directions = 2 if layer.bidirectional else 1
    return [
        f"_l{k}" + ("_reverse" if d else "")
        for k in range(layer.num_layers)
        for d in range(directions)
    ]


def _get(layer: nn.Module, name: str) -> np.ndarray:
    return getattr(layer, name).detach().cpu().numpy().copy()


def _set(layer: nn.Module, name: str, value, what: str) -> None:
    param = getattr(layer, name)
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if array.shape != tuple(param.shape):
        raise ValueError(
            f"{what} has shape {array.shape}, expected {tuple(param.shape)} for {name}"
        )
    with torch.no_grad():
        param.copy_(torch.as_tensor(array, dtype=param.dtype))


def _blocks(array: np.ndarray, order: Sequence[int], axis: int) -> np.ndarray:
    """Re-stack the gate blocks of ``array`` along ``axis``: block k of the result is
    block ``order[k]`` of the input."""
    parts = np.split(array, len(order), axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def _inverse(order: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(k) for k in np.argsort(order))


def _require(layer: nn.Module, table: Mapping[str, tuple], fmt: str) -> tuple[int, ...]:
    family = _family(layer)
    if family not in table:
        supported = ", ".join(f.upper() for f in table)
        raise ValueError(f"{fmt} has no {family.upper()} layout; it supports {supported}")
    if getattr(layer, "proj_size", 0):
        raise ValueError(
            f"{fmt} has no LSTM projection; cannot convert a layer with "
            f"proj_size={layer.proj_size}"
        )
    return table[family]


def _entries(weights, count: int, fmt: str) -> list[Mapping]:
    if isinstance(weights, Mapping):
        weights = [weights]
    weights = list(weights)
    if len(weights) != count:
        raise ValueError(
            f"expected {count} {fmt} weight dicts (one per layer and direction), "
            f"got {len(weights)}"
        )
    return weights


def _key(entry: Mapping, key: str, fmt: str, index: int):
    if key not in entry:
        raise KeyError(f"{fmt} weights #{index} lack {key!r}; they have {sorted(entry)}")
    return np.asarray(entry[key])


def _load_biases(layer, suffix, b_ih, b_hh, what: str, names: tuple[str, str]) -> None:
    """A two-bias format: its biases (named ``names`` there) go to bias_ih and bias_hh."""
    if layer.bias:
        _set(layer, "bias_ih" + suffix, b_ih, f"{what} {names[0]}")
        _set(layer, "bias_hh" + suffix, b_hh, f"{what} {names[1]}")
    elif np.any(b_ih != 0) or np.any(b_hh != 0):
        raise ValueError(f"{what} has non-zero biases but the layer has bias=False")


def _load_single_bias(layer, suffix, bias, what: str) -> None:
    """A one-bias format: the bias goes to bias_ih, zeros to bias_hh."""
    if layer.bias:
        _set(layer, "bias_ih" + suffix, bias, what)
        _set(layer, "bias_hh" + suffix, np.zeros_like(bias), what)
    elif np.any(bias != 0):
        raise ValueError(f"{what} is non-zero but the layer was built with bias=False")


# --------------------------------------------------------------------------- torch.nn


def to_torch_nn(layer: RNNBase) -> nn.RNNBase:
    """A torch.nn RNN/LSTM/GRU with the same configuration and weights (identity layout)."""
    family = _family(layer)
    if family == "gru" and not _reset_after(layer):
        raise ValueError(
            "torch.nn.GRU has no reset-before variant; cannot convert a GRU built with "
            "reset_after=False"
        )
    return _same_layer(layer, _TORCH_CLASSES[family])


def from_torch_nn(module: nn.RNNBase) -> RNNBase:
    """An rnnlab layer with the configuration and weights of a torch.nn RNN/LSTM/GRU."""
    return _same_layer(module, _RNNLAB_CLASSES[_family(module)])


def _same_layer(source: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A ``cls`` layer (torch.nn's or rnnlab's) with the configuration and weights of
    ``source`` (the other's): the two share parameter names and layouts."""
    family = _family(source)
    kwargs = dict(
        num_layers=source.num_layers, bias=source.bias, batch_first=source.batch_first,
        dropout=source.dropout, bidirectional=source.bidirectional,
    )
    if family == "rnn":
        kwargs["nonlinearity"] = _nonlinearity(source)
    if family == "lstm":
        kwargs["proj_size"] = source.proj_size
    ref = next(source.parameters())
    layer = cls(source.input_size, source.hidden_size, device=ref.device, dtype=ref.dtype, **kwargs)
    layer.load_state_dict(source.state_dict())
    return layer


# --------------------------------------------------------------------------- Keras


def _kernels(layer: RNNBase, suffix: str, order) -> dict[str, np.ndarray]:
    """The "kernel" and "recurrent_kernel" of one layer and direction in the Keras form
    (Keras, Haste): W_ih and W_hh with their gate blocks in ``order``, transposed."""
    return {
        "kernel": _blocks(_get(layer, "weight_ih" + suffix), order, 0).T.copy(),
        "recurrent_kernel": _blocks(_get(layer, "weight_hh" + suffix), order, 0).T.copy(),
    }


def _load_kernels(layer: RNNBase, suffix: str, entry, order, fmt: str, index: int) -> str:
    """Set W_ih and W_hh of one layer and direction from an entry in the Keras form (the
    inverse of :func:`_kernels`, ``order`` inverted); returns the entry's name for errors."""
    what = f"{fmt} weights #{index}"
    kernel = _key(entry, "kernel", fmt, index)
    recurrent = _key(entry, "recurrent_kernel", fmt, index)
    _set(layer, "weight_ih" + suffix, _blocks(kernel.T, order, 0), f"{what} kernel.T")
    _set(layer, "weight_hh" + suffix, _blocks(recurrent.T, order, 0), f"{what} recurrent_kernel.T")
    return what


def to_keras(layer: RNNBase) -> list[dict[str, np.ndarray]]:
    """Keras LSTM / GRU / SimpleRNN weights, one dict per layer and direction.

    Build the Keras layer with the same units, ``use_bias=layer.bias``, for GRU
    ``reset_after=layer.reset_after`` and for SimpleRNN ``activation=layer.nonlinearity``;
    ``layer.set_weights(list(d.values()))``. A Keras ``Bidirectional`` wrapper takes the
    forward dict's values followed by the reverse dict's.
    """
    order = _require(layer, _KERAS, "Keras")
    family = _family(layer)
    out = []
    for suffix in _suffixes(layer):
        entry = _kernels(layer, suffix, order)
        if layer.bias:
            b_ih = _blocks(_get(layer, "bias_ih" + suffix), order, 0)
            b_hh = _blocks(_get(layer, "bias_hh" + suffix), order, 0)
            if family == "gru" and _reset_after(layer):
                entry["bias"] = np.stack([b_ih, b_hh])  # (2, 3H): input, recurrent
            else:
                entry["bias"] = b_ih + b_hh
        out.append(entry)
    return out


def from_keras(layer: RNNBase, weights) -> RNNBase:
    """Load Keras LSTM / GRU / SimpleRNN weights (dicts as from :func:`to_keras`) in place.

    A GRU bias of shape (2, 3H) is Keras' ``reset_after=True`` and needs a layer with
    ``reset_after=True``; a (3H,) bias is ``reset_after=False`` and needs
    ``reset_after=False``.
    """
    order = _inverse(_require(layer, _KERAS, "Keras"))
    family = _family(layer)
    suffixes = _suffixes(layer)
    entries = _entries(weights, len(suffixes), "Keras")
    for index, (suffix, entry) in enumerate(zip(suffixes, entries, strict=True)):
        what = _load_kernels(layer, suffix, entry, order, "Keras", index)
        if "bias" not in entry:
            if layer.bias:
                for stem in ("bias_ih", "bias_hh"):
                    _set(layer, stem + suffix, np.zeros(getattr(layer, stem + suffix).shape),
                         what)
            continue
        bias = np.asarray(entry["bias"])
        if family == "gru" and bias.ndim == 2:
            if not _reset_after(layer):
                raise ValueError(
                    f"{what}: a (2, 3H) GRU bias is Keras' reset_after=True, but the layer "
                    "was built with reset_after=False"
                )
            if not layer.bias:
                raise ValueError(f"{what} has a bias but the layer was built with bias=False")
            _set(layer, "bias_ih" + suffix, _blocks(bias[0], order, 0), f"{what} bias[0]")
            _set(layer, "bias_hh" + suffix, _blocks(bias[1], order, 0), f"{what} bias[1]")
            continue
        if family == "gru" and _reset_after(layer):
            raise ValueError(
                f"{what}: a single (3H,) GRU bias is Keras' reset_after=False, but the layer "
                "was built with reset_after=True (expected a (2, 3H) bias)"
            )
        _load_single_bias(layer, suffix, _blocks(bias, order, 0), f"{what} bias")
    return layer


# --------------------------------------------------------------------------- ONNX


def to_onnx_weights(layer: RNNBase) -> list[dict[str, np.ndarray]]:
    """ONNX LSTM / GRU / RNN inputs W, R, B, one dict per layer (directions stacked).

    Node attributes to use: ``hidden_size``, ``direction`` ("bidirectional" when
    ``layer.bidirectional``), for GRU ``linear_before_reset=int(layer.reset_after)``, for
    RNN ``activations=[layer.nonlinearity.capitalize()]``. Without bias there is no "B".
    """
    order = _require(layer, _ONNX, "ONNX")
    directions = 2 if layer.bidirectional else 1
    suffixes = _suffixes(layer)
    out = []
    for k in range(layer.num_layers):
        group = suffixes[k * directions : (k + 1) * directions]
        entry = {
            "W": np.stack([_blocks(_get(layer, "weight_ih" + s), order, 0) for s in group]),
            "R": np.stack([_blocks(_get(layer, "weight_hh" + s), order, 0) for s in group]),
        }
        if layer.bias:
            entry["B"] = np.stack([
                np.concatenate([
                    _blocks(_get(layer, "bias_ih" + s), order, 0),
                    _blocks(_get(layer, "bias_hh" + s), order, 0),
                ])
                for s in group
            ])
        out.append(entry)
    return out


def from_onnx_weights(layer: RNNBase, weights) -> RNNBase:
    """Load ONNX W, R, B (dicts as from :func:`to_onnx_weights`, one per layer) in place."""
    order = _inverse(_require(layer, _ONNX, "ONNX"))
    directions = 2 if layer.bidirectional else 1
    suffixes = _suffixes(layer)
    for k, entry in enumerate(_entries(weights, layer.num_layers, "ONNX")):
        W = _key(entry, "W", "ONNX", k)
        R = _key(entry, "R", "ONNX", k)
        if W.ndim != 3 or W.shape[0] != directions or R.ndim != 3 or R.shape[0] != directions:
            raise ValueError(
                f"ONNX weights #{k}: W and R must be (num_directions={directions}, G·H, ·), "
                f"got W {W.shape} and R {R.shape}"
            )
        B = np.asarray(entry["B"]) if "B" in entry else None
        for d in range(directions):
            suffix = suffixes[k * directions + d]
            what = f"ONNX weights #{k} direction {d}"
            _set(layer, "weight_ih" + suffix, _blocks(W[d], order, 0), f"{what} W")
            _set(layer, "weight_hh" + suffix, _blocks(R[d], order, 0), f"{what} R")
            if B is None:
                if layer.bias:
                    for stem in ("bias_ih", "bias_hh"):
                        zeros = np.zeros(getattr(layer, stem + suffix).shape)
                        _set(layer, stem + suffix, zeros, what)
                continue
            if not layer.bias:
                if np.any(B[d] != 0):
                    raise ValueError(f"{what} B is non-zero but the layer has bias=False")
                continue
            wb, rb = np.split(B[d], 2)
            _set(layer, "bias_ih" + suffix, _blocks(wb, order, 0), f"{what} Wb")
            _set(layer, "bias_hh" + suffix, _blocks(rb, order, 0), f"{what} Rb")
    return layer


# --------------------------------------------------------------------------- Haste


def to_haste(layer: RNNBase) -> list[dict[str, np.ndarray]]:
    """Haste LSTM (i,g,f,o; one bias) or GRU (z,r,h; bias + recurrent_bias) weights."""
    order = _require(layer, _HASTE, "Haste")
    family = _family(layer)
    if family == "gru" and not _reset_after(layer):
        raise ValueError("Haste's GRU resets after the matmul; the layer has reset_after=False")
    out = []
    for suffix in _suffixes(layer):
        entry = _kernels(layer, suffix, order)
        b_ih, b_hh = _biases(layer, suffix)
        if family == "lstm":
            entry["bias"] = _blocks(b_ih + b_hh, order, 0)
        else:
            entry["bias"] = _blocks(b_ih, order, 0)
            entry["recurrent_bias"] = _blocks(b_hh, order, 0)
        out.append(entry)
    return out


def from_haste(layer: RNNBase, weights) -> RNNBase:
    """Load Haste LSTM / GRU weights (dicts as from :func:`to_haste`) in place."""
    order = _inverse(_require(layer, _HASTE, "Haste"))
    family = _family(layer)
    if family == "gru" and not _reset_after(layer):
        raise ValueError("Haste's GRU resets after the matmul; the layer has reset_after=False")
    suffixes = _suffixes(layer)
    entries = _entries(weights, len(suffixes), "Haste")
    for index, (suffix, entry) in enumerate(zip(suffixes, entries, strict=True)):
        what = _load_kernels(layer, suffix, entry, order, "Haste", index)
        bias = _blocks(_key(entry, "bias", "Haste", index), order, 0)
        if family == "lstm":
            _load_single_bias(layer, suffix, bias, f"{what} bias")
            continue
        recurrent_bias = _blocks(_key(entry, "recurrent_bias", "Haste", index), order, 0)
        _load_biases(layer, suffix, bias, recurrent_bias, what, ("bias", "recurrent_bias"))
    return layer


_LN_CLASSES = {"lstm": LSTM, "gru": GRU}


def _require_layer_norm(layer, family: str) -> tuple[int, ...]:
    cls = _LN_CLASSES[family]
    if not (isinstance(layer, cls) and layer.layer_norm):
        got = type(layer).__name__ + (" without layer_norm" if isinstance(layer, cls) else "")
        raise TypeError(
            f"layer must be an rnnlab.nn.{cls.__name__} with layer_norm=True, got {got}"
        )
    return _HASTE[family]


def _to_haste_layer_norm(layer, family: str) -> list[dict[str, np.ndarray]]:
    order = _require_layer_norm(layer, family)
    out = []
    for suffix in _suffixes(layer):
        b_ih, b_hh = _biases(layer, suffix)
        entry = {
            "kernel": _blocks(_get(layer, "weight_ih" + suffix), order, 0).T.copy(),
            "recurrent_kernel": _blocks(_get(layer, "weight_hh" + suffix), order, 0).T.copy(),
        }
        if family == "lstm":
            entry["bias"] = _blocks(b_ih + b_hh, order, 0)
        else:
            entry["bias"] = _blocks(b_ih, order, 0)
            entry["recurrent_bias"] = _blocks(b_hh, order, 0)
        entry["gamma"] = np.stack([_blocks(_get(layer, stem + suffix), order, 0)
                                   for stem in ("gamma_ih", "gamma_hh")])
        if family == "lstm":
            entry["gamma_h"] = _get(layer, "gamma_c" + suffix)
            entry["beta_h"] = (_get(layer, "beta_c" + suffix) if layer.bias
                               else np.zeros_like(entry["gamma_h"]))
        out.append(entry)
    return out


def _from_haste_layer_norm(layer, weights, family: str):
    order = _inverse(_require_layer_norm(layer, family))
    fmt = "Haste LayerNormLSTM" if family == "lstm" else "Haste LayerNormGRU"
    suffixes = _suffixes(layer)
    entries = _entries(weights, len(suffixes), fmt)
    for index, (suffix, entry) in enumerate(zip(suffixes, entries, strict=True)):
        what = f"{fmt} weights #{index}"

        def key(name, entry=entry, index=index):
            return _key(entry, name, fmt, index)

        _set(layer, "weight_ih" + suffix, _blocks(key("kernel").T, order, 0), f"{what} kernel.T")
        _set(layer, "weight_hh" + suffix, _blocks(key("recurrent_kernel").T, order, 0),
             f"{what} recurrent_kernel.T")
        bias = _blocks(key("bias"), order, 0)
        if family == "lstm":
            _load_single_bias(layer, suffix, bias, f"{what} bias")
        else:
            recurrent_bias = _blocks(key("recurrent_bias"), order, 0)
            _load_biases(layer, suffix, bias, recurrent_bias, what, ("bias", "recurrent_bias"))
        gamma = key("gamma")
        if gamma.ndim != 2 or gamma.shape[0] != 2:
            raise ValueError(f"{what} gamma has shape {gamma.shape}, expected (2, G·H)")
        for row, stem in enumerate(("gamma_ih", "gamma_hh")):
            _set(layer, stem + suffix, _blocks(gamma[row], order, 0), f"{what} gamma[{row}]")
        if family == "gru":
            continue
        _set(layer, "gamma_c" + suffix, key("gamma_h"), f"{what} gamma_h")
        beta_h = key("beta_h")
        if layer.bias:
            _set(layer, "beta_c" + suffix, beta_h, f"{what} beta_h")
        elif np.any(beta_h != 0):
            raise ValueError(f"{what} beta_h is non-zero but the layer was built with bias=False")
    return layer


def to_haste_layer_norm_lstm(layer: LSTM) -> list[dict[str, np.ndarray]]:
    """Haste LayerNormLSTM weights of an ``LSTM(layer_norm=True)``, one dict per layer and
    direction: kernel, recurrent_kernel, bias (b_ih + b_hh), gamma, gamma_h, beta_h.
    The normalisations run over all 4H entries, so reordering the gate blocks is exact."""
    return _to_haste_layer_norm(layer, "lstm")


def from_haste_layer_norm_lstm(layer: LSTM, weights) -> LSTM:
    """Load Haste LayerNormLSTM weights (dicts as from :func:`to_haste_layer_norm_lstm`)
    into an ``LSTM(layer_norm=True)`` in place; the bias goes to bias_ih, zeros to bias_hh."""
    return _from_haste_layer_norm(layer, weights, "lstm")


def to_haste_layer_norm_gru(layer: GRU) -> list[dict[str, np.ndarray]]:
    """Haste LayerNormGRU weights of a ``GRU(layer_norm=True)``, one dict per layer and
    direction: kernel, recurrent_kernel, bias, recurrent_bias, gamma (gates z, r, h)."""
    return _to_haste_layer_norm(layer, "gru")


def from_haste_layer_norm_gru(layer: GRU, weights) -> GRU:
    """Load Haste LayerNormGRU weights (dicts as from :func:`to_haste_layer_norm_gru`) into
    a ``GRU(layer_norm=True)`` in place."""
    return _from_haste_layer_norm(layer, weights, "gru")


def _biases(layer: nn.Module, suffix: str) -> tuple[np.ndarray, np.ndarray]:
    if layer.bias:
        return _get(layer, "bias_ih" + suffix), _get(layer, "bias_hh" + suffix)
    zeros = np.zeros(getattr(layer, "weight_hh" + suffix).shape[0],
                     dtype=_get(layer, "weight_hh" + suffix).dtype)
    return zeros, zeros.copy()


# --------------------------------------------------------------------------- char-rnn


def to_char_rnn(layer: RNNBase) -> list[dict[str, np.ndarray]]:
    """char-rnn LSTM weights (Linear i2h and h2h, gates i,f,o,g), one dict per layer."""
    order = _require(layer, _CHAR_RNN, "char-rnn")
    out = []
    for suffix in _suffixes(layer):
        b_ih, b_hh = _biases(layer, suffix)
        out.append({
            "i2h.weight": _blocks(_get(layer, "weight_ih" + suffix), order, 0),
            "i2h.bias": _blocks(b_ih, order, 0),
            "h2h.weight": _blocks(_get(layer, "weight_hh" + suffix), order, 0),
            "h2h.bias": _blocks(b_hh, order, 0),
        })
    return out


def from_char_rnn(layer: RNNBase, weights) -> RNNBase:
    """Load char-rnn LSTM weights (dicts as from :func:`to_char_rnn`) in place.

    ``h2h.bias`` may be absent (char-rnn versions whose h2h Linear has no bias)."""
    order = _inverse(_require(layer, _CHAR_RNN, "char-rnn"))
    suffixes = _suffixes(layer)
    entries = _entries(weights, len(suffixes), "char-rnn")
    for index, (suffix, entry) in enumerate(zip(suffixes, entries, strict=True)):
        what = f"char-rnn weights #{index}"
        i2h = _key(entry, "i2h.weight", "char-rnn", index)
        h2h = _key(entry, "h2h.weight", "char-rnn", index)
        _set(layer, "weight_ih" + suffix, _blocks(i2h, order, 0), f"{what} i2h.weight")
        _set(layer, "weight_hh" + suffix, _blocks(h2h, order, 0), f"{what} h2h.weight")
        b_ih = _blocks(_key(entry, "i2h.bias", "char-rnn", index), order, 0)
        if "h2h.bias" in entry:
            b_hh = _blocks(np.asarray(entry["h2h.bias"]), order, 0)
        else:
            b_hh = np.zeros_like(b_ih)
        _load_biases(layer, suffix, b_ih, b_hh, what, ("i2h.bias", "h2h.bias"))
    return layer
