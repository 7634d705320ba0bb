"""Gradients as torch.nn's tests check them: ``gradcheck`` over inputs, states and
parameters (``test_grad`` of ``test_modules``), ``gradgradcheck``
(``test_LSTM_grad_and_gradgrad``, ``test_GRU_grad_and_gradgrad``) and the ``torch.func``
transforms that torch.nn's layers support (``functional_call``, ``grad``, ``jacrev``)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

import rnnlab.nn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close

F64 = torch.float64
LAYERS = [("RNN", {"nonlinearity": "relu"}), ("RNN", {}), ("GRU", {}), ("LSTM", {}),
          ("LSTM", {"proj_size": 2})]


def _flat(out):
    """A layer's or cell's outputs as one tuple of tensors."""
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(t for item in out for t in _flat(item))


def _module_function(model, *state_parts):
    """(input, *state, *parameters) -> outputs, for gradcheck over all of them."""
    names = [name for name, _ in model.named_parameters()]

    def run(x, *rest):
        state = rest[:len(state_parts)]
        params = dict(zip(names, rest[len(state_parts):], strict=True))
        hx = None if not state else (state if len(state) == 2 else state[0])
        return _flat(functional_call(model, params, (x, hx)))

    return run


@pytest.mark.parametrize(("layer", "kwargs"), LAYERS)
def test_gradcheck_layer(impl, layer, kwargs):
    model = getattr(impl, layer)(2, 3, 2, bidirectional=True, dtype=F64, **kwargs)
    P = kwargs.get("proj_size") or 3
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    state = [torch.randn(4, 2, P, dtype=F64, requires_grad=True)]
    if layer == "LSTM":
        state.append(torch.randn(4, 2, 3, dtype=F64, requires_grad=True))
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    assert gradcheck(_module_function(model, *state), (x, *state, *params), fast_mode=True)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_gradcheck_cell(impl, cell):
    model = getattr(impl, cell)(2, 3, dtype=F64)
    x = torch.randn(2, 2, dtype=F64, requires_grad=True)
    state = [torch.randn(2, 3, dtype=F64, requires_grad=True)
             for _ in range(2 if cell == "LSTMCell" else 1)]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    assert gradcheck(_module_function(model, *state), (x, *state, *params), fast_mode=True)


@pytest.mark.parametrize("impl", [torch.nn, rnnlab.nn], ids=["torch", "rnnlab"])
@pytest.mark.parametrize("layer", ["GRU", "LSTM"])
@pytest.mark.parametrize("bias", [True, False])
def test_grad_and_gradgrad(impl, layer, bias):
    model = getattr(impl, layer)(3, 3, bias=bias, dtype=F64)
    x = torch.randn(3, 1, 3, dtype=F64, requires_grad=True)

    def run(x):
        return _flat(model(x))

    assert gradcheck(run, (x,))
    assert gradgradcheck(run, (x,))


def test_functional_call(impl):
    model = impl.LSTM(3, 4, 2, dtype=F64)
    other = impl.LSTM(3, 4, 2, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    params = dict(other.named_parameters())
    for a, b in zip(_flat(functional_call(model, params, (x,))), _flat(other(x)), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(model(x)[0], other(x)[0])  # the module's own weights are back


@pytest.mark.differs("torch.func gradient transforms")
def test_torch_func_grad_of_parameters(impl, differs):
    model = impl.GRU(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(params):
        return functional_call(model, params, (x,))[0].square().sum()

    if differs:
        with pytest.raises(RuntimeError, match="must override the setup_context staticmethod"):
            torch.func.grad(loss)(params)
        return
    grads = torch.func.grad(loss)(params)
    model(x)[0].square().sum().backward()
    for name, p in model.named_parameters():
        assert_rel_close(grads[name], p.grad, GRAD_TOL[F64], name)


@pytest.mark.differs("torch.func gradient transforms")
def test_torch_func_jacrev_of_the_input(impl, differs):
    model = impl.RNN(3, 4, dtype=F64)
    x = torch.randn(2, 1, 3, dtype=F64)
    if differs:
        with pytest.raises(RuntimeError, match="must override the setup_context staticmethod"):
            torch.func.jacrev(lambda x: model(x)[0])(x)
        return
    jacobian = torch.func.jacrev(lambda x: model(x)[0])(x)
    expected = torch.autograd.functional.jacobian(lambda x: model(x)[0], x)
    assert_rel_close(jacobian, expected, GRAD_TOL[F64])


def test_autograd_functional_jacobian(impl):
    """The autograd-based Jacobian (what rnnlab offers in place of ``torch.func.jacrev``)
    equals torch.nn's for the same weights."""
    model = impl.LSTM(3, 4, dtype=F64)
    ref = torch.nn.LSTM(3, 4, dtype=F64)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 3, dtype=F64)
    jacobian = torch.autograd.functional.jacobian(lambda x: model(x)[0], x)
    expected = torch.autograd.functional.jacobian(lambda x: ref(x)[0], x)
    assert jacobian.shape == (2, 1, 4, 2, 1, 3)
    assert_rel_close(jacobian, expected, OUT_TOL[F64])
