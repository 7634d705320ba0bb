"""The layer-normalised LSTM's ops: opcheck of the forward, backward and inference ops,
gradcheck and gradgradcheck (the double backward recomputes the forward). opcheck's
aot_dispatch test traces them as torch.compile does. Every backend vs the reference is in
test_backends_vs_reference.py (variant "lnlstm")."""

from __future__ import annotations

import torch

from rnnlab import ops_ln


def _args(dtype, bias=True, lengths=(3, 1), reverse=True, probe=True, T=3, B=2, I=2, H=2):
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0, requires_grad=True):
        value = torch.randn(*shape, generator=g, dtype=dtype) * scale
        return value.requires_grad_(requires_grad)

    return (
        rand(T, B, I), rand(B, H), rand(B, H), rand(4 * H, I, scale=0.6),
        rand(4 * H, H, scale=0.6),
        rand(4 * H) if bias else None, rand(4 * H) if bias else None,
        1 + rand(4 * H, scale=0.3), 1 + rand(4 * H, scale=0.3), 1 + rand(H, scale=0.3),
        rand(H, scale=0.3) if bias else None,
        None if lengths is None else torch.tensor(lengths),
        torch.zeros(T, B, H, dtype=dtype, requires_grad=True) if probe else None,
        reverse,
    )


def _leaves(args):
    return [a.detach().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point()
            else a for a in args]


def test_opcheck():
    args = _leaves(_args(torch.float32))
    torch.library.opcheck(ops_ln.lnlstm, args)
    infer_args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(ops_ln.lnlstm_infer, [a for k, a in enumerate(infer_args) if k != 12])
    x, h0, c0, w_ih, w_hh, _, _, g_ih, g_hh, g_c, b_c, lengths, _, reverse = args
    y, h_n, c_n, gates, c = (o.detach() for o in ops_ln.lnlstm(*args))
    detached = [a.detach() if a is not None else None for a in (x, h0, c0, w_ih, w_hh, g_ih,
                                                                  g_hh, g_c, b_c)]
    bw_args = (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n), *detached, y,
               gates, c, lengths, reverse, True)
    torch.library.opcheck(ops_ln.lnlstm_backward, bw_args)


def test_gradcheck_and_double_backward():
    args = _leaves(_args(torch.float64))
    tensors = [a for k, a in enumerate(args) if k not in (11, 13)]

    def outputs(*tensors):
        values = list(tensors)
        values.insert(11, args[11])
        y, h_n, c_n, _, _ = ops_ln.lnlstm(*values, args[13])
        return y, h_n, c_n

    assert torch.autograd.gradcheck(outputs, tensors)
    # the recorded gradients (the recomputation's) equal the backward op's
    wanted = [torch.randn_like(o) for o in outputs(*tensors)]
    by_op = torch.autograd.grad(outputs(*tensors), tensors, wanted)
    recorded = torch.autograd.grad(outputs(*tensors), tensors, wanted, create_graph=True)
    for a, b in zip(recorded, by_op, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # second order through every normalisation and the recurrence (all inputs: 3x slower)
    second = (3, 4, 8, 9, 10)  # w_ih, w_hh, gamma_hh, gamma_c, beta_c

    def outputs_of_some(*chosen):
        values = [a.detach() for a in tensors]
        for k, value in zip(second, chosen, strict=True):
            values[k] = value
        return outputs(*values)

    assert torch.autograd.gradgradcheck(outputs_of_some, [tensors[k] for k in second])
