"""The contract between the ops (:mod:`rnnlab.ops`) and the backends: named bundles in,
named results out, one :class:`typing.Protocol` per cell family.

The custom ops keep flat schemas (``torch.library`` needs flat tensors, and the ONNX
translations read them); ops.py packs their arguments into these bundles once and calls
``kernels.<family>.<entry point>``. A backend is a :class:`BackendKernels`: one object
per family implementing that family's protocol, and one :class:`StreamKernels`. Every
entry point is mandatory, so what a backend offers is declared by its types, not found
by ``hasattr``: a family without a dedicated inference path says so by taking its
``infer`` from :class:`RNNInferByForward` (and the LSTM, GRU ones: its forward,
activations dropped), and a backend without a dedicated streaming kernel serves ``stream`` with
:class:`LayerwiseStream` (its own ``infer`` on each chunk, layer after layer).

The symbols are the reference's (:mod:`rnnlab.reference`, whose docstrings hold each
cell's equations): x, h, c, the gates, m_t = o ⊙ tanh(c_t) for the LSTM. Shapes,
time-major: x (T, B, I); h0 (B, P), P = H unless LSTM projection; c0 (B, H); lengths
(B,) int64 or None for all T; h_probe (T, B, P) or None.

**Packed row layout.** The plain families (RNN, LSTM, GRU: :class:`OneStateKernels`,
:class:`TwoStateKernels` over their own bundles) also take a sequence packed as
``PackedSequence.data`` is: x (N, I) 2-D, samples ordered longest first (``lengths``
given and non-increasing), step t's rows being those of the samples b < batch_sizes[t]
at rows offset[t] .. offset[t] + batch_sizes[t]. Then every per-step tensor — h_probe,
the outputs y, a, gates, c, and dy, dx, dh — is (N, ·) in the same layout: padding steps
have no row, so a training step keeps N = Σ_b lengths[b] rows of activations, not T·B.
A family's kernels that address those rows themselves declare :class:`PackedRows`; the
ops serve the others through their padded form (:class:`rnnlab.backends._rows.Padded`).

Conventions every backend keeps (the tests hold each against the reference):

- padding steps (t ≥ lengths[b]) are never read and are written as zeros (outputs,
  saved activations, input gradients); the state passes through them;
- ``reverse`` processes each sample's valid span from its end to t = 0;
- backward receives only the weights it needs (the biases are ``None`` there: their
  effect is in the saved activations) and returns one bias gradient per bias tensor;
  gradients that were not asked for are empty tensors (ops cannot return None): dh
  (∂L/∂h_t, the probe's gradient) unless ``need_dh``, dx unless ``need_dx`` (x needs no
  gradient, as for the inputs of a model's first layer: torch.nn skips that product too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

import torch
from torch import Tensor

__all__ = [
    "AddsInputGrad",
    "BackendKernels",
    "GRUForward",
    "GRUGrads",
    "GRUInferByForward",
    "GRUKernels",
    "GRUSaved",
    "GRUWeights",
    "LNGRUGrads",
    "LNGRUInferByForward",
    "LNGRUKernels",
    "LNGRUWeights",
    "LNLSTMGrads",
    "LNLSTMKernels",
    "LNLSTMWeights",
    "LSTMForward",
    "LSTMGrads",
    "LSTMInferByForward",
    "LSTMKernels",
    "LSTMSaved",
    "LSTMState",
    "LSTMWeights",
    "LayerwiseStream",
    "MaskedGRUKernels",
    "MaskedLSTMForward",
    "MaskedLSTMKernels",
    "MaskedLSTMSaved",
    "Masks",
    "MinForward",
    "MinGrads",
    "MinKernels",
    "MinSaved",
    "MinWeights",
    "OneStateInferByForward",
    "OneStateKernels",
    "PackedRows",
    "RNNForward",
    "RNNGrads",
    "RNNInferByForward",
    "RNNKernels",
    "RNNSaved",
    "RNNWeights",
    "Sequence",
    "StreamKernels",
    "StreamSpec",
    "Streamer",
    "StreamerByChunks",
    "TwoStateKernels",
    "activation_of",
    "layer_stack",
]


class Sequence(NamedTuple):
    """The input of one direction of one layer."""

    x: Tensor  # (T, B, I), or (N, I) in the packed row layout (module docstring)
    lengths: Tensor | None  # (B,) int64 valid steps per sample; None: all T
    reverse: bool  # process each sample's valid span from its end

    @property
    def packed(self) -> bool:
        """Whether x is in the packed row layout (then ``lengths`` is non-increasing)."""
        return self.x.dim() == 2


class PackedRows:
    """Declares that a family's kernels take the packed row layout (module docstring)
    natively: without it the ops hand them the padded form of a packed sequence."""


class AddsInputGrad:
    """Declares that a family's ``backward`` also takes ``dx_into``, by keyword: a
    contiguous tensor shaped as x to which it adds its dx = d·W_ih instead of allocating
    one, and which it returns as dx (``need_dx`` is then true). Both directions of a
    bidirectional layer read the same x; the op that runs them together
    (:mod:`rnnlab.ops_bidirectional`) passes the reverse direction's dx to the forward
    direction's backward, so one input gradient exists, not two and their sum. Without
    it, that op adds the two."""


# --------------------------------------------------------------------------- one state

W = TypeVar("W", contravariant=True)  # a family's weights bundle
Fwd = TypeVar("Fwd", covariant=True)  # its forward's results
Sv = TypeVar("Sv", contravariant=True)  # what its backward reads of the forward's outputs
G = TypeVar("G", covariant=True)  # its gradients


class OneStateKernels(Protocol[W, Fwd, Sv, G]):
    """The entry points of a family whose state is one tensor h (B, H) and that takes one
    bool option (RNN ``relu``, GRU ``reset_after``): :class:`RNNKernels` and
    :class:`GRUKernels` are this protocol over their bundles. The arguments are
    positional, so each implementation names the option after its family."""

    def forward(
        self, w: W, seq: Sequence, h0: Tensor, h_probe: Tensor | None, option: bool, /
    ) -> Fwd: ...

    def backward(
        self, w: W, seq: Sequence, h0: Tensor, saved: Sv, dy: Tensor, dh_n: Tensor,
        option: bool, need_dh: bool, need_dx: bool, /,
    ) -> G: ...

    def infer(self, w: W, seq: Sequence, h0: Tensor, option: bool, /) -> tuple[Tensor, Tensor]:
        """(y, h_n), keeping no activation."""
        ...


class OneStateInferByForward:
    """Declares that a one-state family (:class:`OneStateKernels`) has no dedicated
    inference path: ``infer`` is its forward without probe, the saved activations
    dropped."""

    def infer(self, w, seq: Sequence, h0: Tensor, option: bool):
        y, h_n, _ = self.forward(w, seq, h0, None, option)
        return y, h_n


# --------------------------------------------------------------------------- RNN


class RNNWeights(NamedTuple):
    w_ih: Tensor  # (H, I)
    w_hh: Tensor  # (H, H)
    b_ih: Tensor | None  # (H,)
    b_hh: Tensor | None  # (H,)


class RNNForward(NamedTuple):
    y: Tensor  # (T, B, H)
    h_n: Tensor  # (B, H)
    a: Tensor  # (T, B, H) pre-activations, for recording only: backward does not read them


class RNNSaved(NamedTuple):
    """What backward reads of the forward: its outputs and the probe added to them. The
    activation's derivative comes from its value f(a_t) = y_t − probe_t, as torch's tanh
    saves its result: tanh'(a) = 1 − f(a)², relu'(a) = [f(a) > 0] (:func:`activation_of`),
    so the pre-activations a are not kept through the step."""

    y: Tensor
    h_probe: Tensor | None


def activation_of(saved: RNNSaved) -> Tensor:
    """f(a_t) (T, B, H), the activation's value, from what an RNN's backward reads: y itself
    without a probe (the probe rnnlab.nn.record passes is zero, but the op takes any)."""
    return saved.y if saved.h_probe is None else saved.y - saved.h_probe


class RNNGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db: Tensor  # the gradient of b_ih and of b_hh (they enter as a sum)
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class RNNKernels(OneStateKernels[RNNWeights, RNNForward, RNNSaved, RNNGrads], Protocol):
    """Elman RNN (:mod:`rnnlab.reference.rnn`); the option ``relu`` picks relu over tanh."""


# --------------------------------------------------------------------------- LSTM


class LSTMWeights(NamedTuple):
    w_ih: Tensor  # (4H, I)
    w_hh: Tensor  # (4H, P)
    b_ih: Tensor | None  # (4H,)
    b_hh: Tensor | None  # (4H,)
    w_hr: Tensor | None  # (P, H) projection, or None (P = H)


class LSTMState(NamedTuple):
    h: Tensor  # (B, P)
    c: Tensor  # (B, H)


class LSTMForward(NamedTuple):
    y: Tensor  # (T, B, P)
    h_n: Tensor  # (B, P)
    c_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, 4H) activated i, f, g, o, saved for backward
    c: Tensor  # (T, B, H) the cell state of every step, saved for backward


class LSTMSaved(NamedTuple):
    y: Tensor
    gates: Tensor
    c: Tensor


class LSTMGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dc0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db: Tensor  # the gradient of b_ih and of b_hh (they enter as a sum)
    dw_hr: Tensor  # empty without projection
    dh: Tensor  # (T, B, P) total ∂L/∂h_t, empty unless asked for


class TwoStateKernels(Protocol[W, G]):
    """The entry points of a family whose state is the LSTM's pair (h, c), whose forward
    returns :class:`LSTMForward` and whose backward reads :class:`LSTMSaved`:
    :class:`LSTMKernels` and :class:`LNLSTMKernels` are this protocol over their weights
    and gradients."""

    def forward(
        self, w: W, seq: Sequence, state: LSTMState, h_probe: Tensor | None, /
    ) -> LSTMForward: ...

    def backward(
        self, w: W, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool, /,
    ) -> G:
        """``d_state`` = (∂L/∂h_n, ∂L/∂c_n)."""
        ...

    def infer(self, w: W, seq: Sequence, state: LSTMState, /) -> tuple[Tensor, Tensor, Tensor]:
        """(y, h_n, c_n), keeping no activation."""
        ...


class LSTMKernels(TwoStateKernels[LSTMWeights, LSTMGrads], Protocol):
    """LSTM with optional projection (:mod:`rnnlab.reference.lstm`)."""


# --------------------------------------------------------------------------- LayerNorm LSTM


class LNLSTMWeights(NamedTuple):
    """The layer-normalised LSTM's weights (:mod:`rnnlab.reference.lnlstm`); P = H."""

    w_ih: Tensor  # (4H, I)
    w_hh: Tensor  # (4H, H)
    b_ih: Tensor | None  # (4H,) the β of LN(W_ih x)
    b_hh: Tensor | None  # (4H,) the β of LN(W_hh h)
    gamma_ih: Tensor  # (4H,) gain of LN(W_ih x)
    gamma_hh: Tensor  # (4H,) gain of LN(W_hh h)
    gamma_c: Tensor  # (H,) gain of LN(c)
    beta_c: Tensor | None  # (H,) bias of LN(c)


class LNLSTMGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dc0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db: Tensor  # the gradient of b_ih and of b_hh (they enter as a sum)
    dgamma_ih: Tensor
    dgamma_hh: Tensor
    dgamma_c: Tensor
    dbeta_c: Tensor  # (H,), empty without beta_c
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class LNLSTMKernels(TwoStateKernels[LNLSTMWeights, LNLSTMGrads], Protocol):
    """Layer-normalised LSTM (:mod:`rnnlab.reference.lnlstm`). Forward returns and backward
    reads the LSTM's bundles (activated gates i, f, g, o and the cell states c_t, which
    are not normalised); backward recomputes the normalisations from them, x and y, and
    gets ``w`` without b_ih, b_hh (beta_c is needed: tanh(LN(c_t)) is recomputed)."""


# --------------------------------------------------------------------------- GRU


class GRUWeights(NamedTuple):
    w_ih: Tensor  # (3H, I)
    w_hh: Tensor  # (3H, H)
    b_ih: Tensor | None  # (3H,)
    b_hh: Tensor | None  # (3H,); b_hn sits inside the reset product
    # (backward needs neither bias: hn, saved in the gates, holds b_hn)


class GRUForward(NamedTuple):
    y: Tensor  # (T, B, H)
    h_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, 4H) r, z, n and the candidate's recurrent term hn


class GRUSaved(NamedTuple):
    y: Tensor
    gates: Tensor


class GRUGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db_ih: Tensor
    db_hh: Tensor
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class GRUKernels(OneStateKernels[GRUWeights, GRUForward, GRUSaved, GRUGrads], Protocol):
    """GRU (:mod:`rnnlab.reference.gru`); the option ``reset_after`` places the reset gate
    as torch.nn does (after the recurrent product), else as Cho et al. (before it)."""


# --------------------------------------------------------------------------- LayerNorm GRU


class LNGRUWeights(NamedTuple):
    """The layer-normalised GRU's weights (:mod:`rnnlab.reference.lngru`)."""

    w_ih: Tensor  # (3H, I)
    w_hh: Tensor  # (3H, H)
    b_ih: Tensor | None  # (3H,) the β of LN(W_ih x)
    b_hh: Tensor | None  # (3H,) the β of LN(W_hh h); b_hn sits inside the reset product
    gamma_ih: Tensor  # (3H,) gain of LN(W_ih x)
    gamma_hh: Tensor  # (3H,) gain of LN(W_hh h)


class LNGRUGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db_ih: Tensor
    db_hh: Tensor
    dgamma_ih: Tensor
    dgamma_hh: Tensor
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class LNGRUKernels(Protocol):
    """Layer-normalised GRU (:mod:`rnnlab.reference.lngru`; reset after the recurrent
    product). Forward returns and backward reads the GRU's bundles (gates r, z, n, hn);
    backward recomputes the normalisations from x and y and needs no bias."""

    def forward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None
    ) -> GRUForward: ...

    def backward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, need_dh: bool, need_dx: bool,
    ) -> LNGRUGrads: ...

    def infer(self, w: LNGRUWeights, seq: Sequence, h0: Tensor) -> tuple[Tensor, Tensor]:
        """(y, h_n), keeping no activation."""
        ...


# --------------------------------------------------------------------------- masked LSTM, GRU


class Masks(NamedTuple):
    """Recurrent dropout and zoneout of one direction of one layer: the symbols of
    :mod:`rnnlab.reference.lstm_masked` and :mod:`rnnlab.reference.gru_masked`."""

    drop_h: Tensor | None  # (B, P) d: h_{t-1} enters W_hh (d ⊙ h_{t-1}); None: d = 1
    keep_h: Tensor | None  # (T, B, P) k^h: h_t = k^h h_{t-1} + (1 - k^h) h̃_t; None: 0
    keep_c: Tensor | None  # (T, B, H) k^c of the LSTM's cell state; None: 0


class MaskedLSTMForward(NamedTuple):
    y: Tensor  # (T, B, P)
    h_n: Tensor  # (B, P)
    c_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, 4H) activated i, f, g, o
    c: Tensor  # (T, B, H) the cell state c_t of every step (after zoneout)
    c_tilde: Tensor  # (T, B, H) c̃_t = f ⊙ c_{t-1} + i ⊙ g (before zoneout)


class MaskedLSTMSaved(NamedTuple):
    y: Tensor
    gates: Tensor
    c: Tensor
    c_tilde: Tensor


class MaskedLSTMKernels(Protocol):
    """LSTM with recurrent dropout and zoneout (:mod:`rnnlab.reference.lstm_masked`).
    The masks are constants: no gradient reaches them."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        h_probe: Tensor | None,
    ) -> MaskedLSTMForward: ...

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads: ...


class MaskedGRUKernels(Protocol):
    """GRU with recurrent dropout and zoneout (:mod:`rnnlab.reference.gru_masked`;
    ``masks.keep_c`` is None). Saves what the plain GRU saves, with hn = W_hn (d ⊙ h_{t-1})
    + b_hn (or W_hn (r ⊙ d ⊙ h_{t-1}) + b_hn)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward: ...

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, saved: GRUSaved,
        dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads: ...


# --------------------------------------------------------------------------- min cells


class MinWeights(NamedTuple):
    """minGRU (:mod:`rnnlab.reference.mingru`) or minLSTM (:mod:`rnnlab.reference.minlstm`):
    the gates read x_t only, so there is no recurrent weight."""

    w_ih: Tensor  # (G·H, I), G = 2 (z, h̃) or 3 (f, i, h̃)
    b_ih: Tensor | None  # (G·H,)


class MinForward(NamedTuple):
    y: Tensor  # (T, B, H)
    h_n: Tensor  # (B, H)
    u: Tensor  # (T, B, G·H) pre-activations W_ih x_t + b_ih, 0 at padding; saved for backward


class MinSaved(NamedTuple):
    y: Tensor
    u: Tensor


class MinGrads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dw_ih: Tensor
    db: Tensor  # the gradient of b_ih
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class MinKernels(Protocol):
    """A min cell over a sequence: the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t whose
    a_t, b_t are pointwise functions of u_t = W_ih x_t + b_ih (:mod:`rnnlab.ops_min`).
    ``parallel`` asks for a parallel scan over time where the backend has one; every
    form computes the same states. Backends share the GEMMs around the recurrence
    (:class:`rnnlab.backends._min.MinByRecurrence`)."""

    def forward(
        self, w: MinWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, parallel: bool,
    ) -> MinForward: ...

    def backward(
        self, w: MinWeights, seq: Sequence, h0: Tensor, saved: MinSaved, dy: Tensor,
        dh_n: Tensor, parallel: bool, need_dh: bool, need_dx: bool,
    ) -> MinGrads: ...


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class StreamSpec:
    """A unidirectional stack to stream at batch size 1: the family, each layer's
    weights (bottom first) and the family's option (``relu`` for RNN, ``reset_after``
    for GRU; ignored for LSTM)."""

    family: str  # "rnn", "lstm" or "gru"
    layers: tuple[RNNWeights | LSTMWeights | GRUWeights, ...]
    option: bool = False


class Streamer(Protocol):
    """A stack advancing one step (or a short chunk) at a time, its state carried.

    ``h`` (L, P) and ``c`` (L, H) (zeros for RNN and GRU) are the carried state, updated
    in place by every call; the caller may write them (reset). The inputs are trusted:
    (I,) or (T, I) contiguous tensors of the stack's dtype and device, no autograd.
    """

    h: Tensor
    c: Tensor

    def step(self, x: Tensor) -> Tensor:
        """One step: x (I,) -> the top layer's h_t (P,)."""
        ...

    def advance(self, x: Tensor) -> Tensor:
        """A chunk: x (T, I) -> the top layer's h_t of every step (T, P)."""
        ...


class StreamerByChunks(ABC):
    """A :class:`Streamer` whose step is a chunk of one step: a subclass writes
    ``advance``. The carried state starts as a copy of the one it is opened with."""

    def __init__(self, h: Tensor, c: Tensor) -> None:
        self.h = h.detach().clone(memory_format=torch.contiguous_format)
        self.c = c.detach().clone(memory_format=torch.contiguous_format)

    def step(self, x: Tensor) -> Tensor:
        return self.advance(x.unsqueeze(0))[0]

    @abstractmethod
    def advance(self, x: Tensor) -> Tensor:
        """A chunk: x (T, I) -> the top layer's h_t of every step (T, P)."""


class StreamKernels(Protocol):
    def open(self, spec: StreamSpec, h: Tensor, c: Tensor) -> Streamer:
        """A streamer for ``spec`` starting from state h (L, P), c (L, H) (copied)."""
        ...


# --------------------------------------------------------------------------- a backend


@dataclass(frozen=True)
class BackendKernels:
    """Everything a backend offers: the object :func:`rnnlab.backends.register`'s
    ``load`` returns. Every field is mandatory."""

    name: str
    rnn: RNNKernels
    lstm: LSTMKernels
    gru: GRUKernels
    stream: StreamKernels
    lnlstm: LNLSTMKernels
    lngru: LNGRUKernels
    masked_lstm: MaskedLSTMKernels  # recurrent dropout / zoneout (rnnlab.ops_masked)
    masked_gru: MaskedGRUKernels
    mingru: MinKernels  # rnnlab.ops_min
    minlstm: MinKernels


class RNNInferByForward(OneStateInferByForward):
    """Declares that an RNN family has no dedicated inference path: ``infer`` is its
    forward without probe, the saved activations dropped."""


class GRUInferByForward(OneStateInferByForward):
    """As :class:`RNNInferByForward`, for a GRU family."""


class LSTMInferByForward:
    """As :class:`RNNInferByForward`, for an LSTM family (the layer-normalised one too)."""

    def infer(self, w: LSTMWeights | LNLSTMWeights, seq: Sequence, state: LSTMState):
        y, h_n, c_n, _, _ = self.forward(w, seq, state, None)
        return y, h_n, c_n


class LNGRUInferByForward:
    """As :class:`RNNInferByForward`, for a layer-normalised GRU family."""

    def infer(self, w: LNGRUWeights, seq: Sequence, h0: Tensor):
        y, h_n, _ = self.forward(w, seq, h0, None)
        return y, h_n


class LayerwiseStream:
    """:class:`StreamKernels` for a backend without a dedicated streaming kernel: each
    chunk runs through each layer as a sequence of batch 1, on the backend's own
    ``infer`` (one inference call per layer and chunk)."""

    def __init__(self, rnn: RNNKernels, lstm: LSTMKernels, gru: GRUKernels) -> None:
        self._families = {"rnn": rnn, "lstm": lstm, "gru": gru}

    def open(self, spec: StreamSpec, h: Tensor, c: Tensor) -> Streamer:
        return _LayerwiseStreamer(self._families[spec.family], spec, h, c)


class _LayerwiseStreamer(StreamerByChunks):
    def __init__(self, family, spec: StreamSpec, h: Tensor, c: Tensor) -> None:
        super().__init__(h, c)
        self._family = family
        self._family_name, self._option = spec.family, spec.option
        self._layers = tuple(  # copies: the stream runs the weights it was opened with
            type(w)(*(None if t is None else t.detach().clone() for t in w)) for w in spec.layers
        )

    @torch.no_grad()
    def advance(self, x: Tensor) -> Tensor:
        layer_input = x.unsqueeze(1)  # (T, 1, I)
        for index, w in enumerate(self._layers):
            seq = Sequence(layer_input, None, False)
            h0 = self.h[index : index + 1]
            if self._family_name == "lstm":
                state = LSTMState(h0, self.c[index : index + 1])
                layer_input, h_n, c_n = self._family.infer(w, seq, state)
                self.c[index] = c_n[0]
            else:
                layer_input, h_n = self._family.infer(w, seq, h0, self._option)
            self.h[index] = h_n[0]
        return layer_input[:, 0]


def layer_stack(layers: Seq[Seq[Tensor]], family: str, proj: bool, bias: bool):
    """The per-layer weight bundles of a module's ``all_weights`` rows."""
    bundles = []
    for weights in layers:
        w_ih, w_hh = weights[0], weights[1]
        b_ih, b_hh = (weights[2], weights[3]) if bias else (None, None)
        if family == "lstm":
            bundles.append(LSTMWeights(w_ih, w_hh, b_ih, b_hh, weights[-1] if proj else None))
        elif family == "gru":
            bundles.append(GRUWeights(w_ih, w_hh, b_ih, b_hh))
        else:
            bundles.append(RNNWeights(w_ih, w_hh, b_ih, b_hh))
    return tuple(bundles)
