"""Module state as torch.nn's tests hold it: ``state_dict`` round trips (also with torch.nn),
pickling, ``copy.deepcopy``, ``torch.save``/``torch.load`` (``weights_only`` too), ``.to``,
``.double()``, ``zero_grad``, ``flatten_parameters`` and weight reparametrisations
(``test_rnn_weight_norm``, ``torch.nn.utils.parametrizations``)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

from helpers import OUT_TOL, assert_rel_close

F64 = torch.float64
LAYERS = [("RNN", {"nonlinearity": "relu"}), ("GRU", {}), ("LSTM", {"proj_size": 2})]


def _model(impl, layer, kwargs, **extra):
    return getattr(impl, layer)(3, 4, 2, bidirectional=True, **kwargs, **extra)


def _run(model, x):
    out, h = model(x)
    return [out, *(h if isinstance(h, tuple) else (h,))]


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize(("layer", "kwargs"), LAYERS)
def test_state_dict_round_trip_with_torch_nn(impl, layer, kwargs):
    ours = _model(impl, layer, kwargs, dtype=F64)
    ref = _model(torch.nn, layer, kwargs, dtype=F64)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 3, dtype=F64)
    for a, b in zip(_run(ours, x), _run(ref, x), strict=True):
        assert_rel_close(a, b, OUT_TOL[F64])
    back = _model(impl, layer, kwargs, dtype=F64)
    back.load_state_dict(ref.state_dict())
    assert _same(_run(back, x), _run(ours, x))
    assert ours.state_dict()._metadata[""] == ref.state_dict()._metadata[""]


def test_load_state_dict_reports_missing_and_unexpected_keys(impl):
    model = impl.GRU(3, 4)
    state = model.state_dict()
    state["weight_hh_l1"] = state.pop("weight_hh_l0")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*weight_hh_l0"):
        model.load_state_dict(state)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["weight_hh_l0"]
    assert result.unexpected_keys == ["weight_hh_l1"]


@pytest.mark.parametrize(("layer", "kwargs"), LAYERS)
def test_pickle_deepcopy_and_save(impl, layer, kwargs):
    model = _model(impl, layer, kwargs)
    x = torch.randn(5, 2, 3)
    expected = _run(model, x)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    copies = [pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
    buffer.seek(0)
    copies.append(torch.load(buffer, weights_only=False))
    buffer.seek(0)
    with torch.serialization.safe_globals([type(model)]):
        copies.append(torch.load(buffer, weights_only=True))
    for other in copies:
        assert type(other) is type(model)
        assert _same(_run(other, x), expected)
        assert all(p is not q and torch.equal(p, q)
                   for p, q in zip(other.parameters(), model.parameters(), strict=True))


def test_weights_only_load_of_a_module_needs_its_class_allowed(impl):
    buffer = io.BytesIO()
    torch.save(impl.LSTM(3, 4), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(buffer, weights_only=True)


def test_state_dict_saved_weights_only(impl):
    model = impl.LSTM(3, 4, 2)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = impl.LSTM(3, 4, 2)
    fresh.load_state_dict(state)
    assert _same(fresh.parameters(), model.parameters())


@pytest.mark.parametrize(("layer", "kwargs"), LAYERS)
def test_dtype_conversions(impl, layer, kwargs):
    model = _model(impl, layer, kwargs)
    x = torch.randn(5, 2, 3)
    expected = _run(model, x)
    for convert in (lambda m: m.double(), lambda m: m.to(F64), lambda m: m.to(dtype=F64)):
        converted = convert(copy.deepcopy(model))
        assert all(p.dtype == F64 for p in converted.parameters())
        got = _run(converted, x.double())
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == F64
            assert_rel_close(a, b, OUT_TOL[torch.float32])
    assert model.to(F64).float() is model


def test_zero_grad_and_every_parameter_gets_a_gradient(impl):
    model = impl.LSTM(3, 4, 2, bidirectional=True, proj_size=2)
    model(torch.randn(5, 2, 3))[0].sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_flatten_parameters_changes_nothing(impl):
    model = impl.GRU(3, 4, 2)
    x = torch.randn(5, 2, 3)
    expected = _run(model, x)
    assert model.flatten_parameters() is None
    assert _same(_run(model, x), expected)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize(("kwargs", "name", "count"), [
    ({}, "weight_ih_l0", 4), ({"proj_size": 2}, "weight_hr_l0", 5)])
def test_weight_norm(impl, kwargs, name, count):
    """``test_rnn_weight_norm``: the reparametrised weight is a plain tensor in
    ``_flat_weights`` and the forward uses it; removing it restores the Parameter."""
    model = impl.LSTM(4, 4, **kwargs)
    x = torch.randn(3, 2, 4)
    expected = _run(model, x)
    model = torch.nn.utils.weight_norm(model, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in model._flat_weights) == count - 1
    for a, b in zip(_run(model, x), expected, strict=True):
        assert_rel_close(a, b, OUT_TOL[torch.float32])
    with torch.no_grad():
        getattr(model, name + "_g").mul_(2)
    assert not torch.equal(_run(model, x)[0], expected[0])
    model = torch.nn.utils.remove_weight_norm(model, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in model._flat_weights) == count
    assert name in model._parameters and model._parameters[name] is not None
    named = dict(model.named_parameters())
    assert name in named and name + "_g" not in named and name + "_v" not in named


@pytest.mark.parametrize("parametrization", ["weight_norm", "orthogonal"])
def test_parametrizations(impl, parametrization):
    model = impl.GRU(4, 4, dtype=F64)
    getattr(torch.nn.utils.parametrizations, parametrization)(model, name="weight_hh_l0")
    x = torch.randn(3, 2, 4, dtype=F64)
    plain = impl.GRU(4, 4, dtype=F64)
    with torch.no_grad():
        for name in plain._flat_weights_names:
            getattr(plain, name).copy_(getattr(model, name))
    for a, b in zip(_run(model, x), _run(plain, x), strict=True):
        assert_rel_close(a, b, OUT_TOL[F64])
    model(x)[0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_assigned_parameter_is_used(impl):
    """Assigning a new Parameter to a weight's name (what torch.nn's ``__setattr__`` keeps
    ``_flat_weights`` in step with) changes the function."""
    model = impl.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    before = model(x)[0]
    model.weight_hh_l0 = torch.nn.Parameter(torch.zeros(12, 4))
    assert model._flat_weights[1] is model.weight_hh_l0
    after = model(x)[0]
    assert not torch.equal(before, after)
    after.sum().backward()
    assert model.weight_hh_l0.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("layer", "kwargs"), LAYERS)
def test_floating_dtypes(impl, dtype, layer, kwargs):
    """Every floating dtype torch.nn runs on the CPU: outputs and states in the parameters'
    dtype, the float64 function to the dtype's precision."""
    model = _model(impl, layer, kwargs, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    expected = _run(model, x)
    got = _run(model.to(dtype), x.to(dtype))
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == dtype
        assert_rel_close(a, b, tol)
