"""Streaming inference: advance a recurrent layer one step (or a short chunk) at a time.

Online use — audio frames, sensor readings, tokens as they arrive — runs a trained layer
at batch size 1 and carries its state from call to call. Calling the module once per
step pays Python and dispatch overhead for every layer and gate; :class:`Stream` hands
the whole stack to the backend's streaming entry point (:func:`rnnlab.ops.open_stream`),
which on the cpu backend runs every layer and every step of the chunk in one compiled
call::

    lstm = rnnlab.nn.LSTM(40, 256, num_layers=2).eval()
    stream = rnnlab.nn.Stream(lstm)
    for frame in frames:                   # frame: (40,)
        y = stream.step(frame)             # (256,): the top layer's h_t
    chunk_out = stream.step(frames_block)  # (T, 40) -> (T, 256), state carried on
    h, c = stream.state                    # (num_layers, P), (num_layers, H)
    stream.reset()                         # back to the zero (or a given) state

``stream.step`` equals running the layer over the concatenation of everything fed so
far (tests hold it to the sequence layer). The stream copies the weights when created:
after changing the layer's parameters, call :meth:`Stream.reload`. Inference only (no
autograd), unidirectional layers only (a reverse direction needs the future), dropout
is not applied (as in ``eval()``). The backend is chosen when the stream is created (or
reloaded), by the registry like every op: :func:`rnnlab.use_backend` and
``RNNLAB_BACKEND`` apply, a CUDA layer streams on the gpu backend, and a backend without
a dedicated streaming kernel runs its inference on each chunk, layer after layer.
:class:`~rnnlab.nn.MinGRU`, :class:`~rnnlab.nn.MinLSTM` and an LSTM with ``layer_norm=True``
have no streaming kernel yet: their stream runs a copy of the layer on each chunk.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from rnnlab import ops
from rnnlab.backends.contract import StreamerByChunks, StreamSpec, layer_stack
from rnnlab.nn.modules import RNNBase

__all__ = ["Stream"]


class Stream:
    """Carried-state, batch-1 inference over an :class:`rnnlab.nn.RNN`, ``LSTM`` or ``GRU``.

    ``state`` (optional) is the initial state as the layer takes it, without the batch
    dimension: h_0 (num_layers, P), or (h_0, c_0) for LSTM; zeros when omitted.
    """

    def __init__(self, layer: RNNBase, state: Tensor | tuple[Tensor, Tensor] | None = None):
        if not isinstance(layer, RNNBase):
            raise TypeError(
                f"Stream needs an rnnlab.nn RNN, LSTM or GRU layer, got {type(layer).__name__}"
            )
        if layer.bidirectional:
            raise ValueError(
                "Stream cannot run a bidirectional layer: its reverse direction reads the "
                "future; stream a unidirectional layer"
            )
        self.layer = layer
        ref = layer.all_weights[0][0]
        self._device, self._dtype = ref.device, ref.dtype
        self._on_cpu = ref.is_cpu
        self._one_step = torch.Size([layer.input_size])
        L, H = layer.num_layers, layer.hidden_size
        P = layer.proj_size or H
        factory = {"device": self._device, "dtype": self._dtype}
        self._streamer = self._open(torch.zeros(L, P, **factory), torch.zeros(L, H, **factory))
        self._step_one = self._streamer.step
        self.reset(state)

    def _open(self, h: Tensor, c: Tensor):
        zoneout = self.layer.zoneout  # its eval form changes the recurrence
        if self.layer.family in _CONTRACT_FAMILIES and not self.layer.layer_norm and not zoneout:
            return ops.open_stream(self._spec(), h, c)
        return _LayerStreamer(self.layer, h, c)

    def _spec(self) -> StreamSpec:
        layer = self.layer
        if layer.family == "gru":
            option = layer.reset_after
        else:
            option = layer.family == "rnn" and layer.nonlinearity == "relu"
        layers = layer_stack(layer.all_weights, layer.family, bool(layer.proj_size), layer.bias)
        return StreamSpec(layer.family, layers, option)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> Tensor | tuple[Tensor, Tensor]:
        """The carried state: h (num_layers, P), or (h, c) for LSTM (copies)."""
        h = self._streamer.h.clone(memory_format=torch.contiguous_format)
        c = self._streamer.c.clone(memory_format=torch.contiguous_format)
        return (h, c) if self.layer.family == "lstm" else h

    def reset(self, state: Tensor | tuple[Tensor, Tensor] | None = None) -> None:
        """Set the carried state (zeros when ``state`` is None)."""
        L, H = self.layer.num_layers, self.layer.hidden_size
        P = self.layer.proj_size or H
        factory = {"device": self._device, "dtype": self._dtype}
        if state is None:
            h, c = torch.zeros(L, P, **factory), torch.zeros(L, H, **factory)
        elif self.layer.family == "lstm":
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise TypeError("an LSTM stream's state must be a tuple (h, c) of two tensors")
            h, c = state
        else:
            h, c = state, torch.zeros(L, H, **factory)
        for name, value, shape in (("h", h, (L, P)), ("c", c, (L, H))):
            if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"stream state {name} must have shape {shape}, got {got}")
        self._streamer.h.copy_(h.detach())
        self._streamer.c.copy_(c.detach())

    # ------------------------------------------------------------------ weights

    def reload(self) -> None:
        """Copy the layer's current parameters into the stream (after training or loading);
        the carried state stays. The backend is chosen again, as when created."""
        streamer = self._streamer
        self._streamer = self._open(streamer.h, streamer.c)
        self._step_one = self._streamer.step

    # ------------------------------------------------------------------ stepping

    def step(self, x: Tensor) -> Tensor:
        """Advance by one step, x (I,) -> (P,), or by a chunk, x (T, I) -> (T, P).

        Returns the top layer's output at each step; the state carries over to the
        next call.
        """
        if (
            type(x) is Tensor
            and x.shape == self._one_step
            and x.dtype is self._dtype
            and not x.requires_grad
            and x.is_contiguous()
            and (x.is_cpu if self._on_cpu else x.device == self._device)
        ):  # one step, the common case: as little Python as possible
            return self._step_one(x)
        if not isinstance(x, Tensor) or x.dtype != self._dtype or x.device != self._device:
            raise ValueError(
                f"Stream.step needs a {self._dtype} tensor on {self._device}, got "
                + (f"{x.dtype} on {x.device}" if isinstance(x, Tensor) else type(x).__name__)
            )
        shape = x.shape
        ndim = len(shape)
        if ndim not in (1, 2) or shape[-1] != self.layer.input_size:
            raise ValueError(
                f"Stream.step takes one step (I,) or a chunk (T, I) with I = input_size = "
                f"{self.layer.input_size}, got shape {tuple(shape)}"
            )
        x = x.detach().contiguous()
        return self._streamer.advance(x) if ndim == 2 else self._step_one(x)


_CONTRACT_FAMILIES = ("rnn", "lstm", "gru")


class _LayerStreamer(StreamerByChunks):
    """The stream of a layer that no streaming kernel serves (the layer-normalised cells, or
    a zoneout that changes the recurrence): a copy of the layer (taken when opened, in eval mode)
    called on each chunk as a sequence of batch 1."""

    def __init__(self, layer: RNNBase, h: Tensor, c: Tensor) -> None:
        super().__init__(h, c)
        self._layer = copy.deepcopy(layer).eval()
        self._time_dim = 1 if layer.batch_first else 0

    @torch.no_grad()
    def advance(self, x: Tensor) -> Tensor:
        batch_of_one = x.unsqueeze(1 - self._time_dim)  # (T, 1, I), or (1, T, I)
        if self._layer.family == "lstm":
            y, (h_n, c_n) = self._layer(batch_of_one, (self.h.unsqueeze(1), self.c.unsqueeze(1)))
            self.c.copy_(c_n[:, 0])
        else:
            y, h_n = self._layer(batch_of_one, self.h.unsqueeze(1))
        self.h.copy_(h_n[:, 0])
        return y.squeeze(1 - self._time_dim)
