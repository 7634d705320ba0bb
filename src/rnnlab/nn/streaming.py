"""Streaming inference: advance a recurrent layer one step (or a short chunk) at a time.

Online use — audio frames, sensor readings, tokens as they arrive — runs a trained layer
at batch size 1 and carries its state from call to call. Calling the module once per
step pays Python and dispatch overhead for every layer and gate; :class:`Stream` runs
the whole stack (every layer, every step of the chunk) in one compiled call::

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
is not applied (as in ``eval()``). CPU float32/float64 run on the cpu backend's compiled
kernel; anything else, or a machine without that backend, falls back to calling the
layer on the chunk (as do :class:`~rnnlab.nn.MinGRU` and :class:`~rnnlab.nn.MinLSTM`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.nn.modules import RNNBase

__all__ = ["Stream"]


def _kernel():
    """The cpu backend's streaming kernel module, or None where that backend cannot run."""
    try:
        from rnnlab.backends.cpu import stream
    except ImportError:
        return None
    return stream


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
        module = _kernel()
        self._compiled = (
            module is not None
            and layer.family in ("rnn", "lstm", "gru")  # MinGRU/MinLSTM: the layer per chunk
            and self._device.type == "cpu"
            and self._dtype in (torch.float32, torch.float64)
        )
        self._module = module
        self.reload()
        self.reset(state)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> Tensor | tuple[Tensor, Tensor]:
        """The carried state: h (num_layers, P), or (h, c) for LSTM (copies)."""
        h = self._h.clone(memory_format=torch.contiguous_format)
        c = self._c.clone(memory_format=torch.contiguous_format)
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
        if self._compiled:
            # One array for the kernel: h rows, c rows, then five rows of scratch.
            width = max(self.layer.input_size, H * {"rnn": 1, "lstm": 4, "gru": 3}[
                self.layer.family])
            self._state = torch.zeros(2 * L + 5, width, dtype=self._dtype)
            self._h = self._state[:L, :P]
            self._c = self._state[L : 2 * L, :H]
            self._h.copy_(h.detach())
            self._c.copy_(c.detach())
            self._state_np = self._state.numpy()
        else:
            self._h = h.detach().to(**factory).clone().contiguous()
            self._c = c.detach().to(**factory).clone().contiguous()

    # ------------------------------------------------------------------ weights

    def reload(self) -> None:
        """Copy the layer's current parameters into the stream (after training or loading)."""
        if not self._compiled:
            return
        layer = self.layer
        H = layer.hidden_size
        P = layer.proj_size or H
        G = {"rnn": 1, "lstm": 4, "gru": 3}[layer.family] * H
        pieces: list[np.ndarray] = []
        table = []
        position = 0

        def add(array: np.ndarray) -> int:
            nonlocal position
            start = position
            pieces.append(np.ascontiguousarray(array).reshape(-1))
            position += array.size
            return start

        with torch.no_grad():
            for weights in layer.all_weights:
                w_ih, w_hh = (w.detach().cpu().numpy() for w in weights[:2])
                if layer.bias:
                    b_ih, b_hh = (w.detach().cpu().numpy() for w in weights[2:4])
                else:
                    b_ih = b_hh = np.zeros(G, dtype=w_ih.dtype)
                if layer.family != "gru":  # one bias for the sum; GRU keeps b_hn apart
                    b_ih, b_hh = b_ih + b_hh, np.zeros_like(b_hh)
                starts = [add(w_ih.T), add(w_hh.T), add(b_ih), add(b_hh), -1]
                if layer.proj_size:
                    starts[4] = add(weights[-1].detach().cpu().numpy().T)
                table.append([*starts, w_ih.shape[1], G, P, H])
        self._width = P
        self._one_step = torch.Size([layer.input_size])
        self._np_dtype = pieces[0].dtype
        self._flat = np.concatenate(pieces)
        self._table = np.asarray(table, dtype=np.int64)
        if layer.family == "lstm":
            self._kind = self._module.LSTM
        elif layer.family == "gru":
            self._kind = self._module.GRU if layer.reset_after else self._module.GRU_RESET_BEFORE
        else:
            relu = layer.nonlinearity == "relu"
            self._kind = self._module.RNN_RELU if relu else self._module.RNN_TANH

    # ------------------------------------------------------------------ stepping

    def step(self, x: Tensor) -> Tensor:
        """Advance by one step, x (I,) -> (P,), or by a chunk, x (T, I) -> (T, P).

        Returns the top layer's output at each step; the state carries over to the
        next call.
        """
        if (
            self._compiled
            and type(x) is Tensor
            and x.shape == self._one_step
            and x.dtype is self._dtype
            and not x.requires_grad
            and x.is_cpu
        ):  # one step, the common case: as little Python as possible
            y = np.empty(self._width, dtype=self._np_dtype)
            self._module.advance_one(
                self._kind, x.numpy(), y, self._flat, self._table, self._state_np
            )
            return torch.from_numpy(y)
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
        if not self._compiled:
            y = self._fallback(x if ndim == 2 else x.unsqueeze(0))
            return y if ndim == 2 else y[0]
        array = x.detach().numpy() if x.is_contiguous() else x.detach().contiguous().numpy()
        chunk = array if ndim == 2 else array.reshape(1, shape[0])
        y = np.empty((chunk.shape[0], self._h.shape[1]), dtype=array.dtype)
        self._module.advance(self._kind, chunk, y, self._flat, self._table, self._state_np)
        return torch.from_numpy(y if ndim == 2 else y[0])

    def _fallback(self, chunk: Tensor) -> Tensor:
        """The layer itself on the chunk (devices and dtypes the kernel does not run)."""
        hx = self._h.unsqueeze(1)
        if self.layer.family == "lstm":
            hx = (hx, self._c.unsqueeze(1))
        training = self.layer.training
        try:
            self.layer.eval()  # no dropout between layers
            with torch.no_grad():
                out, state = self.layer(chunk.unsqueeze(1), hx)
        finally:
            self.layer.train(training)
        if self.layer.family == "lstm":
            self._h, self._c = state[0][:, 0].contiguous(), state[1][:, 0].contiguous()
        else:
            self._h = state[:, 0].contiguous()
        return out[:, 0]
