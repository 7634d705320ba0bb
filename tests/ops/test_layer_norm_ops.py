"""The layer-normalised cells' ops: opcheck of the forward, backward and inference ops
(its aot_dispatch test traces them as torch.compile does), gradcheck, gradgradcheck (the
double backward recomputes the forward) and the recorded gradients == the backward op's.
Every backend vs the reference is in test_backends_vs_reference.py (variants "lnlstm",
"lngru")."""

from __future__ import annotations

import pytest
import torch

from rnnlab import ops_ln

# per family: the op, its inference op, its backward op, the gate count, whether it has
# a cell state, and the positions of lengths, h_probe and reverse in its arguments
FAMILIES = {
    "lnlstm": (ops_ln.lnlstm, ops_ln.lnlstm_infer, ops_ln.lnlstm_backward, 4, True),
    "lngru": (ops_ln.lngru, ops_ln.lngru_infer, ops_ln.lngru_backward, 3, False),
}


def _args(family, dtype, T=3, B=2, I=2, H=2):
    """The op's arguments: lengths (3, 1), a probe, reverse; every float tensor a leaf."""
    _, _, _, G, has_c = FAMILIES[family]
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale + shift).requires_grad_()

    states = [rand(B, H), rand(B, H)] if has_c else [rand(B, H)]
    gains = [rand(G * H, scale=0.3, shift=1), rand(G * H, scale=0.3, shift=1)]
    if has_c:  # gamma_c, beta_c
        gains += [rand(H, scale=0.3, shift=1), rand(H, scale=0.3)]
    probe = torch.zeros(T, B, H, dtype=dtype, requires_grad=True)
    return [rand(T, B, I), *states, rand(G * H, I, scale=0.6), rand(G * H, H, scale=0.6),
            rand(G * H), rand(G * H), *gains, torch.tensor([3, 1]), probe, True]


def _backward_args(family, args, outputs):
    """The backward op's arguments for the forward op's ``args`` and ``outputs``, but
    need_dx."""
    d = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    y = outputs[0].detach()
    if family == "lnlstm":
        x, h0, c0, w_ih, w_hh, _, _, g_ih, g_hh, g_c, b_c, lengths, _, reverse = d
        _, h_n, c_n, gates, c = (o.detach() for o in outputs)
        return (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n), x, h0, c0,
                w_ih, w_hh, g_ih, g_hh, g_c, b_c, y, gates, c, lengths, reverse, True)
    x, h0, w_ih, w_hh, _, _, g_ih, g_hh, lengths, _, reverse = d
    _, h_n, gates = (o.detach() for o in outputs)
    return (torch.randn_like(y), torch.randn_like(h_n), x, h0, w_ih, w_hh, g_ih, g_hh, y, gates,
            lengths, reverse, True)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_opcheck(family):
    op, infer, backward = FAMILIES[family][:3]
    args = _args(family, torch.float32)
    torch.library.opcheck(op, args)
    infer_args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(infer, infer_args[:-2] + infer_args[-1:])  # without the probe
    for need_dx in (True, False):  # dx is empty when x needs no gradient
        torch.library.opcheck(backward, (*_backward_args(family, args, op(*args)), need_dx))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradcheck_and_double_backward(family):
    op, has_c = FAMILIES[family][0], FAMILIES[family][4]
    args = _args(family, torch.float64)
    lengths, reverse = args[-3], args[-1]
    tensors = args[:-3] + args[-2:-1]  # every float input, the probe last

    def outputs(*tensors):
        return op(*tensors[:-1], lengths, tensors[-1], reverse)[: 3 if has_c else 2]

    assert torch.autograd.gradcheck(outputs, tensors)
    # the recorded gradients (the recomputation's) equal the backward op's
    wanted = [torch.randn_like(o) for o in outputs(*tensors)]
    by_op = torch.autograd.grad(outputs(*tensors), tensors, wanted)
    recorded = torch.autograd.grad(outputs(*tensors), tensors, wanted, create_graph=True)
    for a, b in zip(recorded, by_op, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # second order through the normalisations and the recurrence: W_ih, W_hh, the gains
    # (and β_c); all inputs would take 3x longer
    second = [3, 4, 7, 8, 9, 10] if has_c else [2, 3, 6, 7]

    def outputs_of_some(*chosen):
        values = [a.detach() for a in tensors]
        for k, value in zip(second, chosen, strict=True):
            values[k] = value
        return outputs(*values)

    assert torch.autograd.gradgradcheck(outputs_of_some, [tensors[k] for k in second])
