"""Recording what a recurrent layer does: its gates and its gradient through time.

    with rnnlab.nn.record(model) as rec:
        output, _ = model(x)
        loss_fn(output).backward()
    rec.gates["l0"]["f"]        # forget gate of layer 0 at every step, (B, T, H) or (T, B, H)
    rec.hidden["l0"]            # h_t of layer 0 at every step (its output; with gates=True)
    rec.hidden_grads["l0"]      # total ∂L/∂h_t at every step, same layout as the output

Gates come for free: they are the activations the ops save for backward; h_t is the
layer's own output sequence, kept by reference. The gradient
through time is the gradient of a zero perturbation added to every h_t (see
:mod:`rnnlab.ops`), so it includes the paths through the recurrence — the quantity
that vanishes or explodes over long spans.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["Recording", "record"]


def layer_key(prefix: str, layer: int, direction: int) -> str:
    """"<module path>.l<k>[_reverse]" — the suffix of torch.nn's parameter names."""
    key = f"l{layer}" + ("_reverse" if direction else "")
    return f"{prefix}.{key}" if prefix else key


class Recording:
    """What :func:`record` collected; filled as the recorded layers run.

    ``gates``: key -> {gate name: tensor}. LSTM: ``i``, ``f``, ``g``, ``o`` and the cell
    state ``c``; GRU: ``r``, ``z``, ``n``; RNN: ``a``, the pre-activation. ``hidden_grads``:
    key -> total ∂L/∂h_t (filled by backward). Tensors are detached, laid out like the
    layer's output ((B, T, H) with batch_first, (T, B, H) otherwise, (T, H) unbatched),
    and zero at padding steps. Keys are ``"<module path>.l<k>"`` with ``"_reverse"``
    for the backward direction (just ``"l<k>"`` for the recorded module itself). A layer
    called several times inside one ``record`` block keeps its last call.
    """

    def __init__(self, names: dict[nn.Module, str], gates: bool, grads: bool) -> None:
        self._names = names
        self._want_gates = gates
        self._want_grads = grads
        self.gates: dict[str, dict[str, Tensor]] = {}
        self.hidden: dict[str, Tensor] = {}
        self.hidden_grads: dict[str, Tensor] = {}

    def hidden_grad_norms(self, key: str) -> Tensor:
        """‖∂L/∂h_t‖ over features, averaged over the batch: a (T,) curve for ``key``."""
        if key not in self.hidden_grads:
            raise KeyError(
                f"no gradient recorded for {key!r} (has backward run inside the block?); "
                f"recorded: {sorted(self.hidden_grads)}"
            )
        grad = self.hidden_grads[key]
        norms = grad.norm(dim=-1)
        if norms.dim() == 1:
            return norms
        batch_dim = 0 if self._is_batch_first(key) else 1
        return norms.mean(dim=batch_dim)

    def _is_batch_first(self, key: str) -> bool:
        prefix = key.rsplit(".", 1)[0] if "." in key else ""
        for module, name in self._names.items():
            if name == prefix:
                return bool(module.batch_first)
        return False

    # Called by the layers ------------------------------------------------------

    def probe(self, module, layer: int, direction: int, x: Tensor, batched: bool):
        """A zero (T, B, P) tensor whose gradient is ∂L/∂h_t, or None if not recording."""
        if not self._want_grads or not torch.is_grad_enabled():
            return None
        T, B = x.shape[0], x.shape[1]
        probe = x.new_zeros(T, B, module.proj_size or module.hidden_size, requires_grad=True)
        key = layer_key(self._names[module], layer, direction)

        def keep(grad: Tensor) -> None:
            self.hidden_grads[key] = _layout(module, grad.detach(), batched)

        probe.register_hook(keep)
        return probe

    def store_gates(self, module, layer: int, direction: int, saved, y: Tensor,
                    batched: bool) -> None:
        """Called by the layers: keep one layer and direction's saved gates (and cell
        states) and its output sequence y (T, B, P), which is h_t."""
        if not self._want_gates:
            return
        key = layer_key(self._names[module], layer, direction)
        self.gates[key] = {name: _layout(module, t.detach(), batched) for name, t in saved.items()}
        self.hidden[key] = _layout(module, y.detach(), batched)


def _layout(module, t: Tensor, batched: bool) -> Tensor:
    """Time-major (T, B, H) -> the layout of the module's output."""
    if not batched:
        return t.squeeze(1)
    return t.transpose(0, 1) if module.batch_first else t


@contextlib.contextmanager
def record(model: nn.Module, *, gates: bool = True, grads: bool = True) -> Iterator[Recording]:
    """Record gates and/or gradients through time of every rnnlab layer inside ``model``.

    ``model`` is an rnnlab layer or any module containing some. Inside the block the
    layers run exactly as outside (the gradient probe is an added zero); the returned
    :class:`Recording` fills as they run forward and backward.
    """
    from rnnlab.nn.modules import RNNBase

    if not isinstance(model, nn.Module):
        raise TypeError(f"record() needs a torch.nn.Module, got {type(model).__name__}")
    names = {m: name for name, m in model.named_modules() if isinstance(m, RNNBase)}
    if not names:
        raise ValueError(
            f"record() found no rnnlab recurrent layer (RNN, LSTM, GRU) in {type(model).__name__}"
        )
    recording = Recording(names, gates=gates, grads=grads)
    previous = {m: m._recording for m in names}
    for m in names:
        m._recording = recording
    try:
        yield recording
    finally:
        for m, prev in previous.items():
            m._recording = prev
