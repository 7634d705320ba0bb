"""What the explorer computes: activations, connectivity, quantisation, page size limit."""

import numpy as np
import pytest
import torch

from rnnlab._io import InputError
from rnnlab.explore import explore
from rnnlab.explore.connectivity import connectivity
from rnnlab.explore.inputs import explore_input
from rnnlab.explore.page import quantise
from rnnlab.explore.trace import trace
from rnnlab.runs import load_model, pick_run


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trace_h_is_the_layer_output_and_connectivity_is_autograd(compare_run, cell):
    run = pick_run(compare_run, cell)
    model = load_model(run)
    inp = explore_input(run)
    layers = trace(model, inp.x)
    out, _ = model.rnn(inp.x)
    np.testing.assert_allclose(layers[-1].values["h"], out[0].detach().numpy(), atol=1e-6)
    W, T = 10, inp.x.shape[1]
    conn = connectivity(model, inp.x, layers, classes=False, steps=T, window=W)
    x = inp.x.clone().requires_grad_(True)
    for t in (3, T - 1):  # a window cut at step 0, and one starting from a carried state
        with torch.enable_grad():
            o, _ = model.rnn(x)
            (g,) = torch.autograd.grad(model.head(o[0, t]).sum(), x)
        full = g[0].norm(dim=-1).numpy()
        lo = max(0, t - W + 1)
        np.testing.assert_allclose(conn[t, W - (t - lo + 1):], full[lo:t + 1], rtol=1e-4,
                                   atol=1e-7)
        assert np.all(conn[t, :W - (t - lo + 1)] == 0)


def test_a_bidirectional_trace_holds_both_directions_of_every_layer(bidirectional_run):
    run = pick_run(bidirectional_run)
    model = load_model(run)
    inp = explore_input(run)
    layers = trace(model, inp.x)
    assert [lt.key for lt in layers] == ["l0", "l1", "l0_reverse", "l1_reverse"]
    out, _ = model.rnn(inp.x)  # (1, T, 2H): the top layer, forward then reverse
    H = model.config.hidden_size
    np.testing.assert_allclose(layers[1].values["h"], out[0, :, :H].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(layers[3].values["h"], out[0, :, H:].detach().numpy(), atol=1e-6)
    meta = explore(bidirectional_run, connect_steps=5).page.meta["models"][0]
    assert [(x["layer"], x["direction"]) for x in meta["layers"]] == [
        (0, "forward"), (1, "forward"), (0, "reverse"), (1, "reverse")]
    assert meta["connectivity"] is None


def test_quantised_rows_are_within_half_a_level():
    v = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    v[:, 2] = 0.25  # a constant unit
    q, lo, hi = quantise(v)
    assert q.shape == (3, 50) and q.dtype == np.uint8
    back = np.asarray(lo) + q.T * ((np.asarray(hi) - np.asarray(lo)) / 255)
    assert np.all(np.abs(back - v) <= (np.asarray(hi) - np.asarray(lo)) / 510 + 1e-6)


def test_a_page_over_the_limit_needs_serve(compare_run):
    explorer = explore(compare_run, connect_steps=0)
    with pytest.raises(InputError, match="--serve"):
        explorer.page.html(limit=1000)
    assert "rows-0-0-h" not in explorer.page.html(serve=True, limit=1000)
    assert "<iframe srcdoc=" in explorer._repr_html_()
