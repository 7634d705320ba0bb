"""The explorer pages in headless Chromium: each view checked by interacting with it."""

import numpy as np
import pytest
import torch

from rnnlab.explore import explore
from rnnlab.explore.data import ExploreData, ModelData
from rnnlab.explore.page import Page
from rnnlab.explore.serve import serve_in_background
from rnnlab.runs import load_model, pick_run

WINDOW, CONNECT = 30, 60


class Opened:
    """A loaded page, the explorer it came from, and the console errors it logged."""

    def __init__(self, browser, url, explorer=None):
        self.explorer = explorer
        self.errors = []
        self.tab = browser.new_page(viewport={"width": 1300, "height": 900})
        self.tab.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.goto(url)
        self.tab.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def js(self, expression, arg=None):
        return self.tab.evaluate(expression, arg)

    def rows(self, m, layer, q):
        """The page's data for (model, layer, quantity), dequantised: (H, T)."""
        info = self.explorer.page.meta["models"][m]["layers"][layer]
        lo, hi = np.asarray(info["lo"][q]), np.asarray(info["hi"][q])
        q8 = self.explorer.page.rows[f"{m}/{layer}/{q}"]
        return lo[:, None] + q8 * ((hi - lo) / 255)[:, None]


def _open(browser, tmp_path_factory, run, **options):
    explorer = explore(run, **options)
    path = explorer.save(tmp_path_factory.mktemp("pages") / "explore.html")
    return Opened(browser, path.as_uri(), explorer)


@pytest.fixture(scope="module")
def char_page(browser, charlm_run, tmp_path_factory):
    opened = _open(browser, tmp_path_factory, charlm_run, steps=800, connect_steps=CONNECT,
                   window=WINDOW)
    yield opened
    assert opened.errors == []


@pytest.fixture(scope="module")
def compare_page(browser, compare_run, tmp_path_factory):
    opened = _open(browser, tmp_path_factory, compare_run, connect_steps=CONNECT,
                   window=WINDOW)
    yield opened
    assert opened.errors == []


def _choose_unit(page, rank):
    """Pick the unit listed at ``rank`` and wait until view 1 has redrawn with it."""
    drawn = page.js("rnnlabExplorer.timings.length")
    page.tab.select_option("#units", index=rank)
    page.tab.wait_for_function(
        f"rnnlabExplorer.timings.slice({drawn}).some(x => x.view === 'cells')")


def _backgrounds(page, selector):
    return page.js(f"[...document.querySelectorAll('{selector}')].map(s => s.style.background)")


def test_hovering_a_step_reads_the_chosen_unit(char_page):
    p = char_page
    unit = p.js("rnnlabExplorer.state.unit")
    p.tab.hover("#input span[data-t='25']")
    readout = p.tab.text_content("#readout")
    assert readout.startswith("step 25 ") and f"h[unit {unit}]" in readout
    assert float(readout.rsplit("=", 1)[1]) == pytest.approx(p.rows(0, 0, "h")[unit, 25],
                                                             abs=1e-3)
    before = _backgrounds(p, "#input span")
    assert len(set(before)) > 10  # steps coloured by their values
    _choose_unit(p, 3)
    after = _backgrounds(p, "#input span")
    assert after != before


def test_a_selection_finds_every_matching_span(char_page):
    p = char_page
    p.tab.select_option("#quantity", "h")
    text = p.explorer.page.meta["text"]
    a = text.index("return", text.index("return") + 1)
    b = a + 5
    h = p.rows(0, 0, "h")  # (H, T)
    threshold = round(0.5 * float(h[:, a:b + 1].min(axis=1).max()), 3)
    on = [u for u in range(len(h)) if np.all(h[u, a:b + 1] > threshold)]
    mask = np.all(h[on] > threshold, axis=0)
    expected, t = [], 0
    while t < len(mask):
        if mask[t]:
            e = t
            while e + 1 < len(mask) and mask[e + 1]:
                e += 1
            if e - t + 1 >= (b - a + 2) // 2 and (e < a or t > b):
                expected.append(f"{t}..{e}")
            t = e + 1
        else:
            t += 1
    assert on and expected
    p.tab.fill("#span-from", str(a))
    p.tab.fill("#span-to", str(b))
    p.tab.fill("#threshold", str(threshold))
    p.tab.click("#match")
    p.tab.wait_for_function("document.querySelectorAll('#matches li').length > 0")
    listed = [li.split(" ")[0] for li in p.js(
        "[...document.querySelectorAll('#matches li')].map(li => li.textContent)")]
    assert listed == expected
    outlined = p.js("[...document.querySelectorAll('#input span.match')].map(s => +s.dataset.t)")
    first, last = map(int, expected[0].split(".."))
    assert set(range(first, last + 1)) <= set(outlined)


def test_the_slider_moves_the_diagrams_values(char_page):
    p = char_page
    unit = p.js("rnnlabExplorer.state.unit")
    p.tab.focus("#slider")
    for _ in range(7):
        p.tab.keyboard.press("ArrowRight")
    p.tab.wait_for_function("document.querySelector('#step').textContent === '7'")
    p.tab.wait_for_function("document.querySelector('#diagram-title-0').textContent"
                            ".endsWith('step 7')")
    for q in ("f", "i", "o", "c", "h"):
        shown = float(p.tab.text_content(f"#dg-0-{q}"))
        assert shown == pytest.approx(p.rows(0, 0, q)[unit, 7], abs=2e-3), q
    assert float(p.tab.text_content("#dg-0-c_prev")) == pytest.approx(
        p.rows(0, 0, "c")[unit, 6], abs=2e-3)


def test_hovering_a_step_colours_what_its_prediction_remembers(char_page):
    p = char_page
    t = 45
    p.tab.hover(f"#connect-0 span[data-t='{t}']")
    colours = _backgrounds(p, "#connect-0 span")
    white = "rgb(255, 255, 255)"
    assert all(c == white for c in colours[t + 1:])  # nothing after t
    assert all(c == white for c in colours[:t - WINDOW + 1])  # nothing before the window
    row = p.explorer.page.data.models[0].connectivity[t]  # (W,), the last column is s = t
    strongest = t - (WINDOW - 1) + int(np.argmax(row))
    assert colours[strongest] == "rgb(255, 80, 0)"  # the heat of the row's maximum


def test_gate_statistics_draw_one_dot_per_unit(char_page):
    p = char_page
    for q in ("i", "f", "o"):
        assert p.js(f"document.querySelector('#stats-0-0-{q}').dataset.points") == "16"
    total = p.js("document.querySelector('#hist-0-0-f').dataset.total")
    assert int(total) == p.explorer.page.meta["steps"] * 16
    pixels = p.js("""(() => { const c = document.querySelector('#stats-0-0-f');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0; for (let k = 0; k < d.length; k += 4) blue += d[k + 2] > 150 && d[k] < 120;
        return blue; })()""")
    assert pixels > 0


def test_the_sampler_answers_with_the_models_probabilities(char_page, charlm_run):
    p = char_page
    prime = 'def f1(a, b):\n    return "'
    model = load_model(pick_run(charlm_run))
    vocab = p.explorer.page.meta["vocab"]
    ids = torch.tensor([[vocab.index(ch) for ch in prime]])
    with torch.no_grad():
        expected = torch.softmax(model(ids)[0][0, -1].double() / 0.7, -1).numpy()
    got = np.asarray(p.js("a => rnnlabExplorer.nextProbs(0, a[0], a[1])", [prime, 0.7]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    p.tab.fill("#prime", prime)
    p.tab.fill("#length", "40")
    p.tab.click("#sample")
    probs = p.js("[...document.querySelectorAll('#sampled span')].map(s => +s.dataset.p)")
    assert len(probs) == 40 and all(0 < q <= 1 for q in probs)
    assert p.tab.text_content("#sampled b") == prime


def test_a_comparison_shows_every_cell_side_by_side(compare_page):
    p = compare_page
    titles = [p.tab.text_content(f"#diagram-title-{m}") for m in range(3)]
    assert [t.split(":")[0] for t in titles] == ["rnn-seed0", "lstm-seed0", "gru-seed0"]
    p.tab.focus("#slider")
    p.tab.keyboard.press("ArrowRight")
    p.tab.wait_for_function("document.querySelector('#diagram-title-2').textContent"
                            ".endsWith('step 1')")
    gru_unit = int(titles[2].split("unit ")[1].split(",")[0])
    assert float(p.tab.text_content("#dg-2-z")) == pytest.approx(
        p.rows(2, 0, "z")[gru_unit, 1], abs=2e-3)
    canvas = p.tab.locator("#connect-1")
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    p.tab.wait_for_function("rnnlabExplorer.state.target !== null")
    t = p.js("rnnlabExplorer.state.target")
    assert t == int(0.75 * p.explorer.page.meta["steps"])
    for m in range(3):  # each cell's window before t is coloured, its own way
        orange = p.js(f"""(() => {{ const c = document.querySelector('#connect-{m}');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let k = 0; k < d.length; k += 4) n += d[k] > 250 && d[k + 2] < 200;
            return n; }})()""")
        assert orange > 0, m
    assert p.tab.is_hidden("#view-sample")  # no sampler for a task that is not charlm


def test_a_large_served_page_redraws_within_100_ms(browser):
    T, H = 100_000, 256
    rng = np.random.default_rng(0)
    vocab = "abc de(f)\"g\n"
    text = "".join(np.asarray(list(vocab))[rng.integers(0, len(vocab), T)])
    h = rng.integers(0, 256, (T, H), dtype=np.uint8).astype(np.float32) / 127.5 - 1.0
    data = ExploreData("charlm", "synthetic", text, None, [],
                       [ModelData("big", "rnn", [{"h": h}], None)], vocab=vocab)
    server, url = serve_in_background(Page(data))
    try:
        p = Opened(browser, url)
        p.js("rnnlabExplorer.timings.length = 0")
        for t in (10, 500, 999):
            p.tab.hover(f"#input span[data-t='{t}']")
        for k in (1, 2, 3):
            _choose_unit(p, k)
        p.js("rnnlabExplorer.setStep(98765)")  # to the window that holds step 98765
        p.tab.wait_for_selector("#input span[data-t='98765']")
        timings = p.js("rnnlabExplorer.timings")
        assert len(timings) >= 4
        assert max(x["ms"] for x in timings) < 100, timings
        assert p.errors == []
    finally:
        server.shutdown()


def _ranked(p, m, layer, q, rank):
    values = p.explorer.page.meta["models"][m]["layers"][layer]["stats"][q][rank]
    return sorted(range(len(values)), key=lambda u: -values[u])  # stable, as the page's sort


def _diagram_waits_for(p, text):
    p.tab.wait_for_function("t => document.querySelector('#diagram-title-0').textContent"
                            ".includes(t)", arg=text)


def test_the_diagram_shows_a_group_of_units(char_page):
    p = char_page
    p.tab.select_option("#quantity", "f")
    p.js("rnnlabExplorer.setStep(11)")
    p.tab.select_option("#group", "top")
    p.tab.fill("#group-k", "4")
    _diagram_waits_for(p, "mean of 4 units")
    s = p.js("rnnlabExplorer.state")
    units = _ranked(p, 0, 0, "f", s["rank"])[:4]
    assert f"({', '.join(map(str, units))})" in p.tab.text_content("#diagram-title-0")
    for q in ("f", "i", "c"):  # the node: the group's mean; its strip: each unit
        group = p.rows(0, 0, q)[units, 11]
        assert float(p.tab.text_content(f"#dg-0-{q}")) == pytest.approx(group.mean(), abs=2e-3)
        strip = p.js(f"[...document.querySelectorAll('#dg-0-{q}-strip rect')]"
                     ".map(r => +r.dataset.value)")
        np.testing.assert_allclose(strip, group, atol=2e-3)
    # the units view 2 finds on: select a span, match, show them
    p.tab.fill("#span-from", "40")
    p.tab.fill("#span-to", "41")
    p.tab.fill("#threshold", "0")
    p.tab.click("#match")
    p.tab.wait_for_function("rnnlabExplorer.state.matchUnits.length > 0")
    on = p.js("rnnlabExplorer.state.matchUnits")
    f = p.rows(0, 0, "f")
    assert on == [u for u in range(len(f)) if np.all(f[u, 40:42] > 0)]
    p.tab.select_option("#group", "matched")
    _diagram_waits_for(p, f"mean of {len(on)} units" if len(on) > 1 else f"unit {on[0]},")
    assert float(p.tab.text_content("#dg-0-f")) == pytest.approx(f[on, 11].mean(), abs=2e-3)
    p.tab.select_option("#group", "unit")
    p.tab.select_option("#quantity", "h")


def test_a_bidirectional_run_shows_its_reverse_direction(browser, bidirectional_run,
                                                         tmp_path_factory):
    p = _open(browser, tmp_path_factory, bidirectional_run, connect_steps=0)
    assert p.tab.is_visible("#direction-choice")
    assert p.js("[...document.querySelector('#direction').options].map(o => o.value)") == [
        "forward", "reverse"]
    p.tab.select_option("#layer", "1")
    p.tab.select_option("#direction", "reverse")
    _diagram_waits_for(p, "layer 1 (reverse)")
    assert p.js("rnnlabExplorer.state.l") == 3  # forward l0, l1, then reverse l0, l1
    p.js("rnnlabExplorer.setStep(5)")
    _diagram_waits_for(p, "step 5")
    unit = p.js("rnnlabExplorer.state.unit")
    h = p.rows(0, 3, "h")
    assert p.tab.text_content("#dg-0-h_prev-label") == "h(t+1)"  # the reverse's previous step
    assert float(p.tab.text_content("#dg-0-h_prev")) == pytest.approx(h[unit, 6], abs=2e-3)
    assert float(p.tab.text_content("#dg-0-z")) == pytest.approx(
        p.rows(0, 3, "z")[unit, 5], abs=2e-3)
    canvas = p.tab.locator("#series")  # view 1 reads the reverse direction too
    box = canvas.bounding_box()
    p.tab.hover("#series", position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    p.tab.wait_for_function("document.querySelector('#readout').textContent.includes('=')")
    readout = p.tab.text_content("#readout")
    t = int(readout.split()[1])
    assert float(readout.rsplit("=", 1)[1]) == pytest.approx(h[unit, t], abs=1e-3)
    assert "layer 1 (reverse)" in p.tab.text_content("#stats")
    assert p.errors == []


@pytest.mark.parametrize("run_name", ["new_cells_run", "zoneout_run"])
def test_every_cell_draws_its_gates_and_samples_as_its_model(browser, tmp_path_factory,
                                                             request, run_name):
    """The cells beyond rnn/lstm/gru and the regularised ones: each model's diagram shows
    its own recorded quantities at the step, view 5 plots its gates, and the page's
    sampler (lnlstm/lngru: the normalisations; min cells; zoneout's eval form) gives the
    model's probabilities."""
    run = request.getfixturevalue(run_name)
    p = _open(browser, tmp_path_factory, run, steps=300, connect_steps=20, window=10)
    models = p.explorer.page.meta["models"]
    assert p.explorer.page.meta["notes"] == []  # nothing left out
    p.js("rnnlabExplorer.setStep(7)")
    p.tab.wait_for_function("document.querySelector('#diagram-title-0').textContent"
                            ".endsWith('step 7')")
    prime = 'def f1(a, b):\n    return "'
    vocab = p.explorer.page.meta["vocab"]
    ids = torch.tensor([[vocab.index(ch) for ch in prime]])
    for m, meta in enumerate(models):
        title = p.tab.text_content(f"#diagram-title-{m}")
        assert title.startswith(f"{meta['name']}: layer 0, unit "), title
        unit = int(title.split("unit ")[1].split(",")[0])
        for q in meta["layers"][0]["quantities"]:
            assert float(p.tab.text_content(f"#dg-{m}-{q}")) == pytest.approx(
                p.rows(m, 0, q)[unit, 7], abs=2e-3), (meta["cell"], q)
        for q in meta["layers"][0]["saturation"]:
            assert p.js(f"+document.querySelector('#stats-{m}-0-{q}').dataset.points") == 10
        model = load_model(pick_run(run, meta["cell"]))
        with torch.no_grad():
            expected = torch.softmax(model(ids)[0][0, -1].double() / 0.7, -1).numpy()
        got = np.asarray(p.js("a => rnnlabExplorer.nextProbs(a[0], a[1], a[2])",
                              [m, prime, 0.7]))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=meta["cell"])
        assert meta["connectivity"] is not None
    cells = [m["cell"] for m in models]
    if "minlstm" in cells:  # what minLSTM keeps of h_{t-1}, f', has its histogram
        assert set(models[cells.index("minlstm")]["layers"][0]["histogram"]) == {"f", "f_norm"}
    assert p.errors == []
