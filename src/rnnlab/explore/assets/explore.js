"use strict";
// rnnlab explore: the page's views. Data: the JSON in #meta (see rnnlab/explore/page.py)
// and one uint8 row per (model, layer, quantity, unit), decoded when a view needs it.
(() => {
  const META = JSON.parse(document.getElementById("meta").textContent);
  const $ = (id) => document.getElementById(id);
  const T = META.steps;
  const WINDOW = 1000; // steps drawn at once in view 1 (the window holding the current step)
  // Signed quantities (red +, blue −) and, among them, the unbounded ones coloured through
  // tanh (explore/trace.py SIGNED, UNBOUNDED); the rest are gates in (0, 1) (green).
  const SIGNED = new Set(META.signed), UNBOUNDED = new Set(META.unbounded);
  const timings = []; // {view, ms} of every redraw, read by the browser tests
  const state = { m: 0, l: 0, q: "h", rank: "variance", unit: 0, t: 0, hover: null,
    matches: [], matchUnits: [], drawnStart: -1, target: null };

  function timed(view, draw) {
    const t0 = performance.now();
    draw();
    timings.push({ view, ms: performance.now() - t0 });
  }
  function fail(err) {
    console.error(err);
    $("source").textContent = `Error: ${err.message}`;
  }

  // ----------------------------------------------------------------------- data
  const rows = new Map();
  const blocks = new Map();
  function decode64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function block(m, l, q) {
    const key = `${m}-${l}-${q}`;
    if (!blocks.has(key)) blocks.set(key, $(`rows-${key}`).textContent.split(" "));
    return blocks.get(key);
  }
  async function unitRow(m, l, q, u) {
    const key = `${m}/${l}/${q}/${u}`;
    if (rows.has(key)) return rows.get(key);
    let bytes;
    if (META.serve) {
      const resp = await fetch(`data/${key}`);
      if (!resp.ok) throw new Error(`data/${key}: HTTP ${resp.status}`);
      bytes = new Uint8Array(await resp.arrayBuffer());
    } else {
      bytes = decode64(block(m, l, q)[u]);
    }
    const layer = META.models[m].layers[l];
    const lo = layer.lo[q][u], scale = (layer.hi[q][u] - lo) / 255;
    const row = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) row[i] = lo + scale * bytes[i];
    rows.set(key, row);
    return row;
  }
  const layerOf = () => META.models[state.m].layers[state.l];
  // A model's traced layers: the forward direction's, then a bidirectional model's reverse
  // ones; each names its layer number and direction. Views address them by index.
  const reversed = (m, l) => META.models[m].layers[l].direction === "reverse";
  function layerIndex(m, layer, direction) {
    const layers = META.models[m].layers;
    const n = Math.min(layer, Math.max(...layers.map((x) => x.layer)));
    const at = (d) => layers.findIndex((x) => x.layer === n && x.direction === d);
    const k = at(direction);
    return k >= 0 ? k : at("forward");
  }
  const layerName = (info) => `layer ${info.layer}` +
    (info.direction === "reverse" ? " (reverse)" : "");

  // ----------------------------------------------------------------------- colours
  // Colours by 1/100 of the range, built once: a redraw only indexes them.
  const level = (k) => Math.round(255 - 2 * k);
  const POSITIVE = Array.from({ length: 101 }, (_, k) => `rgb(255,${level(k)},${level(k)})`);
  const NEGATIVE = Array.from({ length: 101 }, (_, k) => `rgb(${level(k)},${level(k)},255)`);
  const GATE = Array.from({ length: 101 }, (_, k) => `rgb(${level(k)},255,${level(k)})`);
  function colour(q, v) {
    if (SIGNED.has(q)) {
      const a = Math.max(-1, Math.min(1, UNBOUNDED.has(q) ? Math.tanh(v) : v));
      return (a >= 0 ? POSITIVE : NEGATIVE)[Math.round(100 * Math.abs(a))];
    }
    return GATE[Math.round(100 * Math.max(0, Math.min(1, v)))];
  }
  const heat = (a) => `rgb(255,${Math.round(255 - 175 * a)},${Math.round(255 - 255 * a)})`;
  const shown = (ch) => (ch === "\n" ? "↵\n" : ch);

  // ----------------------------------------------------------------------- view 1
  function fillSelect(sel, items) {
    sel.innerHTML = "";
    for (const [value, label] of items) sel.add(new Option(label, value));
  }
  function rankedUnits(m, l, q, rank) {
    const values = META.models[m].layers[l].stats[q][rank];
    return values.map((v, u) => [u, v]).sort((a, b) => b[1] - a[1]);
  }
  function fillUnits() {
    const ranked = rankedUnits(state.m, state.l, state.q, state.rank);
    fillSelect($("units"), ranked.map(([u, v]) => [u, `unit ${u}  ${v.toFixed(3)}`]));
    state.unit = ranked[0][0];
    $("units").value = String(state.unit);
  }
  function fillLayerChoices() { // the selected model's layer numbers and directions
    const layers = META.models[state.m].layers;
    const numbers = [...new Set(layers.map((x) => x.layer))];
    fillSelect($("layer"), numbers.map((k) => [k, `layer ${k}`]));
    const directions = [...new Set(layers.map((x) => x.direction))];
    fillSelect($("direction"), directions.map((d) => [d, d]));
    $("direction-choice").hidden = directions.length < 2;
  }
  function fillLayer() {
    const layer = layerOf();
    state.matchUnits = [];
    fillSelect($("quantity"), layer.quantities.map((q) => [q, q]));
    if (!layer.quantities.includes(state.q)) state.q = "h";
    $("quantity").value = state.q;
    fillSelect($("rank"), Object.keys(layer.stats[state.q]).map((k) => [k, k]));
    if (!(state.rank in layer.stats[state.q])) state.rank = "variance";
    $("rank").value = state.rank;
    fillUnits();
  }
  const escaped = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };
  function buildSpans(container, start, end) {
    const parts = [];
    for (let t = start; t < end; t++) {
      const ch = shown(META.text[t]).replace(/[&<>]/g, (c) => escaped[c]);
      parts.push(`<span data-t="${t}">${ch}</span>`);
    }
    container.innerHTML = parts.join("");
  }
  async function drawCells() {
    const row = await unitRow(state.m, state.l, state.q, state.unit);
    timed("cells", () => {
      const start = Math.floor(state.t / WINDOW) * WINDOW, end = Math.min(T, start + WINDOW);
      if (META.text !== null) {
        if (state.drawnStart !== start) {
          buildSpans($("input"), start, end);
          state.drawnStart = start;
        }
        const spans = $("input").children;
        const matched = new Uint8Array(end - start);
        for (const [a, b] of state.matches) {
          for (let t = Math.max(a, start); t <= Math.min(b, end - 1); t++) matched[t - start] = 1;
        }
        for (let t = start; t < end; t++) {
          const s = spans[t - start];
          s.style.background = colour(state.q, row[t]);
          const cls = (matched[t - start] ? "match" : "") + (t === state.t ? " cursor" : "");
          if (s.className !== cls) s.className = cls;
        }
      } else {
        drawSeries($("series"), start, end, (t) => colour(state.q, row[t]));
      }
    });
  }
  function drawSeries(canvas, start, end, background) {
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    ctx.clearRect(0, 0, W, H);
    const n = end - start, dx = W / n;
    for (let t = start; t < end; t++) {
      ctx.fillStyle = background(t);
      ctx.fillRect((t - start) * dx, 0, Math.max(dx, 1), H);
    }
    for (const [k, line] of META.series.entries()) {
      let lo = Infinity, hi = -Infinity;
      for (let t = start; t < end; t++) { lo = Math.min(lo, line[t]); hi = Math.max(hi, line[t]); }
      const span = hi > lo ? hi - lo : 1;
      ctx.strokeStyle = ["#222", "#555", "#888", "#aaa"][k % 4];
      ctx.beginPath();
      for (let t = start; t < end; t++) {
        const x = (t - start + 0.5) * dx, y = H - 6 - (H - 12) * (line[t] - lo) / span;
        if (t === start) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    canvas.dataset.start = String(start);
    canvas.dataset.end = String(end);
  }
  function stepAt(event) {
    if (event.target.dataset && event.target.dataset.t !== undefined) {
      return Number(event.target.dataset.t);
    }
    const c = event.target;
    if (c.tagName !== "CANVAS" || c.dataset.start === undefined) return null;
    const start = Number(c.dataset.start), end = Number(c.dataset.end);
    const x = (event.offsetX / c.clientWidth) * (end - start);
    return Math.min(end - 1, start + Math.floor(x));
  }
  async function hover(t) {
    if (t === null) return;
    state.hover = t;
    const row = await unitRow(state.m, state.l, state.q, state.unit);
    const what = META.text !== null ? JSON.stringify(META.text[t])
      : META.names.map((n, k) => `${n}=${META.series[k][t].toFixed(3)}`).join(" ");
    $("readout").textContent =
      `step ${t} ${what}: ${state.q}[unit ${state.unit}] = ${row[t].toFixed(3)}`;
    const models = META.models;
    if (models.some((m) => m.connectivity && t < m.connectivity.targets)) drawConnect(t);
  }

  // ----------------------------------------------------------------------- view 2
  async function match() {
    let a = Number($("span-from").value), b = Number($("span-to").value);
    if (a > b) [a, b] = [b, a];
    a = Math.max(0, Math.min(T - 1, a));
    b = Math.max(0, Math.min(T - 1, b));
    const thr = Number($("threshold").value), H = layerOf().hidden;
    const on = [];
    for (let u = 0; u < H; u++) {
      const row = await unitRow(state.m, state.l, state.q, u);
      let all = true;
      for (let t = a; t <= b && all; t++) all = row[t] > thr;
      if (all) on.push(u);
    }
    const list = $("matches");
    list.replaceChildren();
    state.matches = [];
    state.matchUnits = on;
    if (!on.length) {
      $("match-units").textContent =
        `No unit of ${state.q} is above ${thr} at every step ${a}..${b}; lower the threshold.`;
      await drawCells();
      return;
    }
    const mask = new Uint8Array(T).fill(1);
    for (const u of on) {
      const row = await unitRow(state.m, state.l, state.q, u);
      for (let t = 0; t < T; t++) if (!(row[t] > thr)) mask[t] = 0;
    }
    const need = Math.max(1, Math.ceil((b - a + 1) / 2));
    for (let t = 0; t < T;) {
      if (!mask[t]) { t++; continue; }
      let e = t;
      while (e + 1 < T && mask[e + 1]) e++;
      if (e - t + 1 >= need && (e < a || t > b)) state.matches.push([t, e]);
      t = e + 1;
    }
    $("match-units").textContent = `${on.length} unit(s) of ${state.q} on throughout ${a}..${b}` +
      ` (${on.slice(0, 20).join(", ")}${on.length > 20 ? ", …" : ""}); ` +
      `${state.matches.length} other span(s) where all of them are on:`;
    for (const [s, e] of state.matches.slice(0, 200)) {
      const li = document.createElement("li");
      const snippet = META.text !== null ? JSON.stringify(META.text.slice(s, e + 1)) : "";
      li.textContent = `${s}..${e} ${snippet}`;
      li.onclick = () => setStep(s);
      list.appendChild(li);
    }
    await drawCells();
    if ($("group").value === "matched") await drawDiagrams(); // the diagram shows them
  }

  // ----------------------------------------------------------------------- view 3
  // Nodes of the guide's diagram: [name, x, y, label]; edges between node names.
  const DIAGRAMS = {
    lstm: {
      nodes: [["c_prev", 40, 40, "c(t-1)"], ["fx", 140, 40, "×"], ["plus", 230, 40, "+"],
        ["c", 330, 40, "c(t)"], ["f", 100, 150, "f"], ["i", 170, 150, "i"],
        ["g", 230, 150, "g"], ["o", 290, 150, "o"], ["tanh", 330, 100, "tanh"],
        ["h", 330, 210, "h(t)"], ["h_prev", 40, 210, "h(t-1), x(t)"]],
      edges: [["c_prev", "fx"], ["fx", "plus"], ["plus", "c"], ["f", "fx"], ["i", "plus"],
        ["g", "plus"], ["c", "tanh"], ["tanh", "h"], ["o", "h"], ["h_prev", "f"],
        ["h_prev", "i"], ["h_prev", "g"], ["h_prev", "o"]],
    },
    gru: {
      nodes: [["h_prev", 40, 40, "h(t-1)"], ["zx", 170, 40, "×"], ["plus", 260, 40, "+"],
        ["h", 340, 40, "h(t)"], ["r", 90, 150, "r"], ["z", 170, 150, "z"],
        ["n", 260, 150, "n"], ["x", 40, 210, "x(t)"]],
      edges: [["h_prev", "zx"], ["zx", "plus"], ["plus", "h"], ["z", "zx"], ["n", "plus"],
        ["r", "n"], ["x", "r"], ["x", "z"], ["x", "n"], ["h_prev", "r"]],
    },
    rnn: {
      nodes: [["h_prev", 60, 60, "h(t-1)"], ["x", 60, 180, "x(t)"], ["a", 200, 120, "tanh"],
        ["h", 330, 120, "h(t)"]],
      edges: [["h_prev", "a"], ["x", "a"], ["a", "h"]],
    },
    // The min cells' gates read x(t) only: h(t) = (1 − z) ⊙ h(t−1) + z ⊙ h̃ (minGRU),
    // f' ⊙ h(t−1) + (1 − f') ⊙ h̃ with f' = f / (f + i) (minLSTM).
    mingru: {
      nodes: [["h_prev", 40, 40, "h(t-1)"], ["zx", 170, 40, "× (1-z)"], ["plus", 260, 40, "+"],
        ["h", 340, 40, "h(t)"], ["z", 170, 150, "z"], ["h_tilde", 260, 150, "h̃ (× z)"],
        ["x", 40, 210, "x(t)"]],
      edges: [["h_prev", "zx"], ["zx", "plus"], ["plus", "h"], ["z", "zx"], ["z", "h_tilde"],
        ["h_tilde", "plus"], ["x", "z"], ["x", "h_tilde"]],
    },
    minlstm: {
      nodes: [["h_prev", 40, 40, "h(t-1)"], ["fx", 150, 40, "× f'"], ["plus", 260, 40, "+"],
        ["h", 340, 40, "h(t)"], ["f_norm", 150, 100, "f'"], ["f", 80, 160, "f"],
        ["i", 170, 160, "i"], ["h_tilde", 260, 160, "h̃ (× 1-f')"], ["x", 40, 215, "x(t)"]],
      edges: [["h_prev", "fx"], ["fx", "plus"], ["plus", "h"], ["f_norm", "fx"],
        ["f", "f_norm"], ["i", "f_norm"], ["h_tilde", "plus"], ["x", "f"], ["x", "i"],
        ["x", "h_tilde"]],
    },
  };
  // The layer-normalised cells: their base cell's diagram (the normalisations sit inside
  // the gates and the read-out of c).
  DIAGRAMS.lnlstm = DIAGRAMS.lstm;
  DIAGRAMS.lngru = DIAGRAMS.gru;
  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }
  // The layer each model's diagram shows: the selected model's own, for the others the
  // same layer number and direction where they have it.
  function diagramLayer(m) {
    if (m === state.m) return state.l;
    return layerIndex(m, layerOf().layer, layerOf().direction);
  }
  function ranking(m, l) {
    const layer = META.models[m].layers[l];
    const q = layer.quantities.includes(state.q) ? state.q : "h";
    const rank = state.rank in layer.stats[q] ? state.rank : "variance";
    return rankedUnits(m, l, q, rank).map(([u]) => u);
  }
  // The units a diagram shows: the chosen unit (another model: its first by the same
  // ranking), the first k of the ranking, or the units view 2 found on (another model:
  // as many of its first by the ranking).
  function diagramUnits(m, l) {
    const group = $("group").value, k = Math.max(1, Math.floor(Number($("group-k").value)));
    if (group === "unit") return [m === state.m ? state.unit : ranking(m, l)[0]];
    if (group === "matched" && state.matchUnits.length) {
      return m === state.m ? state.matchUnits : ranking(m, l).slice(0, state.matchUnits.length);
    }
    return ranking(m, l).slice(0, k);
  }
  function buildDiagrams() {
    const box = $("diagrams");
    box.replaceChildren();
    META.models.forEach((model, m) => {
      const div = document.createElement("div");
      const head = document.createElement("h3");
      head.id = `diagram-title-${m}`;
      div.appendChild(head);
      const root = svg("svg", { viewBox: "0 0 380 240", width: "380", height: "240",
        id: `diagram-${m}` }, div);
      const d = DIAGRAMS[model.cell], at = Object.fromEntries(d.nodes.map((n) => [n[0], n]));
      for (const [a, b] of d.edges) {
        svg("line", { x1: at[a][1], y1: at[a][2], x2: at[b][1], y2: at[b][2],
          stroke: "#999", "stroke-width": 1.5 }, root);
      }
      for (const [name, x, y, label] of d.nodes) {
        const g = svg("g", {}, root);
        svg("rect", { x: x - 34, y: y - 17, width: 68, height: 34, rx: 6, fill: "#fff",
          stroke: "#444", id: `dg-${m}-${name}-box` }, g);
        svg("text", { x, y: y - 3, "text-anchor": "middle", "font-size": 11,
          id: `dg-${m}-${name}-label` }, g).textContent = label;
        svg("text", { x, y: y + 11, "text-anchor": "middle", "font-size": 11,
          "font-family": "monospace", id: `dg-${m}-${name}` }, g);
        // small multiples: one cell per unit of the group, below the node
        svg("g", { id: `dg-${m}-${name}-strip`, transform: `translate(${x - 34},${y + 18})` },
          g);
      }
      box.appendChild(div);
    });
  }
  const STRIP = 32; // units drawn as small multiples at most (the mean covers them all)
  async function drawDiagrams() {
    const values = [];
    for (const [m, model] of META.models.entries()) {
      const l = diagramLayer(m), units = diagramUnits(m, l);
      // the previous step in this direction's own order: t + 1 when it runs in reverse
      const prev = state.t + (reversed(m, l) ? 1 : -1);
      const each = {}; // node name -> the group's values
      for (const q of model.layers[l].quantities) {
        each[q] = [];
        if (q === "h" || q === "c") each[q + "_prev"] = [];
        for (const u of units) {
          const row = await unitRow(m, l, q, u);
          each[q].push(row[state.t]);
          if (q === "h" || q === "c") each[q + "_prev"].push(prev >= 0 && prev < T ? row[prev] : 0);
        }
      }
      values.push([m, model, l, units, each]);
    }
    timed("diagram", () => {
      for (const [m, model, l, units, each] of values) {
        const info = model.layers[l];
        const who = units.length === 1 ? `unit ${units[0]}` : `mean of ${units.length} units ` +
          `(${units.slice(0, 12).join(", ")}${units.length > 12 ? ", …" : ""})`;
        $(`diagram-title-${m}`).textContent =
          `${model.name}: ${layerName(info)}, ${who}, step ${state.t}`;
        if (model.cell === "rnn") each.a = each.h;
        const later = info.direction === "reverse";
        for (const [name, , , label] of DIAGRAMS[model.cell].nodes) {
          $(`dg-${m}-${name}-label`).textContent = later ? label.replace("t-1", "t+1") : label;
          const text = $(`dg-${m}-${name}`), strip = $(`dg-${m}-${name}-strip`);
          strip.replaceChildren();
          if (!(name in each)) { text.textContent = ""; continue; }
          const vs = each[name], mean = vs.reduce((a, b) => a + b, 0) / vs.length;
          text.textContent = mean.toFixed(3);
          const q = name.replace("_prev", "") === "a" ? "h" : name.replace("_prev", "");
          $(`dg-${m}-${name}-box`).setAttribute("fill", colour(q, mean));
          if (vs.length < 2) continue;
          const n = Math.min(vs.length, STRIP), w = 68 / n;
          for (let k = 0; k < n; k++) {
            svg("rect", { x: k * w, y: 0, width: w, height: 6, fill: colour(q, vs[k]),
              "data-value": vs[k].toFixed(4) }, strip);
          }
        }
      }
    });
  }
  async function setStep(t) {
    state.t = Math.max(0, Math.min(T - 1, t));
    $("slider").value = String(state.t);
    $("step").textContent = String(state.t);
    await drawCells();
    await drawDiagrams();
  }

  // ----------------------------------------------------------------------- view 4
  const connectRows = new Map();
  function connectRow(m) {
    if (!connectRows.has(m)) connectRows.set(m, decode64(META.models[m].connectivity.data));
    return connectRows.get(m);
  }
  function buildConnect() {
    const box = $("connect");
    box.replaceChildren();
    const some = META.models.find((m) => m.connectivity);
    if (!some) {
      $("connect-what").textContent = "(Not computed for this run.)";
      return;
    }
    const N = some.connectivity.targets, W = some.connectivity.window;
    $("connect-what").textContent = `Shown for the first ${N} steps as t, each with the ` +
      `${W} steps before it (the model's full run supplies the state entering that window); ` +
      `the prediction is the log-probability of the output the model ranks first (classes, ` +
      `characters) or the sum of its outputs (values); each t's colours are scaled to its ` +
      `own largest gradient.`;
    META.models.forEach((model, m) => {
      if (!model.connectivity) return;
      const div = document.createElement("div");
      const head = document.createElement("h3");
      head.textContent = model.name;
      div.appendChild(head);
      if (META.text !== null) {
        const text = document.createElement("div");
        text.className = "input connect-text";
        text.id = `connect-${m}`;
        buildSpans(text, 0, N);
        div.appendChild(text);
      } else {
        const c = document.createElement("canvas");
        c.width = 600;
        c.height = 140;
        c.className = "series";
        c.id = `connect-${m}`;
        div.appendChild(c);
      }
      box.appendChild(div);
    });
    for (const [m] of META.models.entries()) {
      if (META.models[m].connectivity) paintConnect(m, null);
    }
  }
  function paintConnect(m, t) {
    const conn = META.models[m].connectivity, N = conn.targets, W = conn.window;
    const data = connectRow(m);
    const level = (s) => {
      if (t === null || s > t || s < t - W + 1) return 0;
      return data[t * W + (W - 1 - (t - s))] / 255;
    };
    const el = $(`connect-${m}`);
    if (META.text !== null) {
      const spans = el.children;
      for (let s = 0; s < N; s++) {
        spans[s].style.background = heat(level(s));
        spans[s].className = s === t ? "cursor" : "";
      }
    } else {
      drawSeries(el, 0, N, (s) => (s === t ? "#000" : heat(level(s))));
    }
  }
  function drawConnect(t) {
    timed("connect", () => {
      state.target = t;
      for (const [m, model] of META.models.entries()) {
        if (model.connectivity) paintConnect(m, Math.min(t, model.connectivity.targets - 1));
      }
    });
  }

  // ----------------------------------------------------------------------- view 5
  function buildStats() {
    const box = $("stats");
    box.replaceChildren();
    META.models.forEach((model, m) => {
      model.layers.forEach((layer, l) => {
        const div = document.createElement("div");
        const head = document.createElement("h3");
        head.textContent = `${model.name}, ${layerName(layer)}`;
        div.appendChild(head);
        for (const [q, sat] of Object.entries(layer.saturation)) {
          div.appendChild(scatter(`stats-${m}-${l}-${q}`, q, sat));
        }
        for (const [q, counts] of Object.entries(layer.histogram)) {
          div.appendChild(histogram(`hist-${m}-${l}-${q}`, q, counts));
        }
        box.appendChild(div);
      });
    });
  }
  function axes(ctx, S, xlabel, ylabel) {
    ctx.strokeStyle = "#444";
    ctx.strokeRect(30, 10, S - 40, S - 40);
    ctx.fillStyle = "#222";
    ctx.font = "11px sans-serif";
    ctx.fillText(xlabel, 34, S - 14);
    ctx.save();
    ctx.translate(12, S - 34);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(ylabel, 0, 0);
    ctx.restore();
  }
  function scatter(id, q, sat) {
    const S = 180, c = document.createElement("canvas");
    c.width = S;
    c.height = S;
    c.id = id;
    const ctx = c.getContext("2d");
    axes(ctx, S, `${q}: fraction < 0.1`, "fraction > 0.9");
    ctx.fillStyle = "rgba(30, 90, 200, 0.6)";
    for (let u = 0; u < sat.low.length; u++) {
      const x = 30 + sat.low[u] * (S - 40), y = S - 30 - sat.high[u] * (S - 40);
      ctx.beginPath();
      ctx.arc(x, y, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    c.dataset.points = String(sat.low.length);
    c.title = `${q}: each dot a unit`;
    return c;
  }
  function histogram(id, q, counts) {
    const S = 180, c = document.createElement("canvas");
    c.width = S;
    c.height = S;
    c.id = id;
    const ctx = c.getContext("2d");
    axes(ctx, S, `${q} value 0 … 1`, "count");
    const top = Math.max(1, ...counts), w = (S - 40) / counts.length;
    ctx.fillStyle = "#2a9d8f";
    counts.forEach((n, k) => {
      const h = (n / top) * (S - 42);
      ctx.fillRect(30 + k * w, S - 30 - h, w - 1, h);
    });
    c.dataset.total = String(counts.reduce((a, b) => a + b, 0));
    return c;
  }

  // ----------------------------------------------------------------------- view 6
  // The forward of a charlm model: embedding, the cell's step as rnnlab.reference defines
  // it (reference/lstm.py lstm_forward, reference/gru.py gru_forward with reset_after=True,
  // reference/rnn.py rnn_forward with tanh; lnlstm.py, lngru.py; mingru.py, minlstm.py;
  // zoneout in its eval form, lstm_masked.py and gru_masked.py with k = p: recurrent
  // dropout and weight-drop are off in eval), the linear head, softmax at a temperature.
  const nets = new Map();
  function net(m) {
    if (nets.has(m)) return nets.get(m);
    const model = META.models[m], w = {};
    for (const [name, spec] of Object.entries(model.weights)) {
      w[name] = { shape: spec.shape, v: new Float32Array(decode64(spec.data).buffer) };
    }
    const n = { cell: model.cell, w, layers: model.layers.length, zoneout: model.zoneout,
      H: model.layers[0].hidden, vocab: META.vocab };
    nets.set(m, n);
    return n;
  }
  function affine(W, b, x, out, rowsN) { // out[r] = b[r] + W[r, :] · x
    const K = x.length;
    for (let r = 0; r < rowsN; r++) {
      let s = b ? b.v[r] : 0;
      const off = r * K;
      for (let k = 0; k < K; k++) s += W.v[off + k] * x[k];
      out[r] = s;
    }
    return out;
  }
  const sig = (x) => 1 / (1 + Math.exp(-x));
  const LN_EPS = 1e-5; // reference/lnlstm.py LN_EPS
  // LN(v; γ, β) in place over all of v's entries (reference/lnlstm.py), then + b.
  function layerNorm(v, gamma, beta, b) {
    const mean = v.reduce((a, x) => a + x, 0) / v.length;
    const variance = v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length;
    const rstd = 1 / Math.sqrt(variance + LN_EPS);
    for (let k = 0; k < v.length; k++) {
      v[k] = gamma.v[k] * (v[k] - mean) * rstd + (beta ? beta.v[k] : 0) + (b ? b.v[k] : 0);
    }
    return v;
  }
  // Both projections of a step: (W_ih x + b_ih, W_hh h + b_hh), each normalised (with its
  // bias added after) in the layer-normalised cells; none for the min cells.
  function projections(n, p, x, h, G) {
    if (n.cell === "mingru" || n.cell === "minlstm") {
      return [affine(p("weight_ih"), p("bias_ih"), x, new Float64Array(G), G), null];
    }
    if (n.cell === "lnlstm" || n.cell === "lngru") {
      return [layerNorm(affine(p("weight_ih"), null, x, new Float64Array(G), G),
        p("gamma_ih"), null, p("bias_ih")),
      layerNorm(affine(p("weight_hh"), null, h, new Float64Array(G), G),
        p("gamma_hh"), null, p("bias_hh"))];
    }
    return [affine(p("weight_ih"), p("bias_ih"), x, new Float64Array(G), G),
      affine(p("weight_hh"), p("bias_hh"), h, new Float64Array(G), G)];
  }
  function step(n, st, id) {
    const E = n.w["embed.weight"].shape[1];
    let x = Float64Array.from(n.w["embed.weight"].v.subarray(id * E, (id + 1) * E));
    const H = n.H, k = n.zoneout; // zoneout's eval share: k ⊙ previous + (1 − k) ⊙ new
    for (let l = 0; l < n.layers; l++) {
      const p = (name) => n.w[`rnn.${name}_l${l}`];
      const G = p("weight_ih").shape[0];
      const [gi, gh] = projections(n, p, x, st.h[l], G);
      const h = new Float64Array(H);
      if (n.cell === "lstm" || n.cell === "lnlstm") {
        const ct = new Float64Array(H);
        for (let j = 0; j < H; j++) {
          const i = sig(gi[j] + gh[j]), f = sig(gi[H + j] + gh[H + j]);
          const g = Math.tanh(gi[2 * H + j] + gh[2 * H + j]);
          ct[j] = f * st.c[l][j] + i * g;
        }
        const read = n.cell === "lnlstm" ? layerNorm(Float64Array.from(ct), p("gamma_c"),
          p("beta_c"), null) : ct;
        for (let j = 0; j < H; j++) {
          const o = sig(gi[3 * H + j] + gh[3 * H + j]);
          h[j] = k * st.h[l][j] + (1 - k) * o * Math.tanh(read[j]);
          st.c[l][j] = k * st.c[l][j] + (1 - k) * ct[j];
        }
      } else if (n.cell === "gru" || n.cell === "lngru") {
        for (let j = 0; j < H; j++) {
          const r = sig(gi[j] + gh[j]), z = sig(gi[H + j] + gh[H + j]);
          const nn = Math.tanh(gi[2 * H + j] + r * gh[2 * H + j]);
          h[j] = k * st.h[l][j] + (1 - k) * ((1 - z) * nn + z * st.h[l][j]);
        }
      } else if (n.cell === "mingru") {
        for (let j = 0; j < H; j++) {
          const z = sig(gi[j]);
          h[j] = (1 - z) * st.h[l][j] + z * gi[H + j];
        }
      } else if (n.cell === "minlstm") {
        for (let j = 0; j < H; j++) {
          const f = sig(gi[j]), i = sig(gi[H + j]);
          h[j] = (f * st.h[l][j] + i * gi[2 * H + j]) / (f + i);
        }
      } else {
        for (let j = 0; j < H; j++) h[j] = Math.tanh(gi[j] + gh[j]);
      }
      st.h[l] = h;
      x = h;
    }
    const V = n.w["head.weight"].shape[0];
    return affine(n.w["head.weight"], n.w["head.bias"], x, new Float64Array(V), V);
  }
  function softmax(logits, temperature) {
    let top = -Infinity;
    for (const v of logits) top = Math.max(top, v / temperature);
    const p = logits.map((v) => Math.exp(v / temperature - top));
    const sum = p.reduce((a, b) => a + b, 0);
    return p.map((v) => v / sum);
  }
  function start(m, prime) {
    const n = net(m), index = new Map([...META.vocab].map((ch, k) => [ch, k]));
    const unknown = [...new Set([...prime].filter((ch) => !index.has(ch)))];
    if (unknown.length) throw new Error(`the prime uses characters the model never saw: ` +
      JSON.stringify(unknown.join("")));
    const ids = prime.length ? [...prime].map((ch) => index.get(ch))
      : [index.has("\n") ? index.get("\n") : 0];
    const st = { h: [], c: [] };
    for (let l = 0; l < n.layers; l++) {
      st.h.push(new Float64Array(n.H));
      st.c.push(new Float64Array(n.H));
    }
    let logits;
    for (const id of ids) logits = step(n, st, id);
    return { n, st, logits };
  }
  function nextProbs(m, prime, temperature) {
    return Array.from(softmax(start(m, prime).logits, temperature));
  }
  function rng(seed) { // mulberry32
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function sample() {
    const out = $("sampled");
    try {
      const m = Number($("sample-model").value), prime = $("prime").value;
      const temperature = Number($("temperature").value), length = Number($("length").value);
      if (!(temperature > 0)) throw new Error("temperature must be > 0");
      const random = rng(Number($("seed").value));
      let { n, st, logits } = start(m, prime);
      const frag = document.createDocumentFragment();
      const head = document.createElement("b");
      head.textContent = prime;
      frag.appendChild(head);
      for (let k = 0; k < length; k++) {
        const p = softmax(logits, temperature);
        let r = random(), id = 0;
        while (id < p.length - 1 && r >= p[id]) r -= p[id++];
        const s = document.createElement("span");
        s.textContent = shown(META.vocab[id]);
        s.title = `p = ${p[id].toFixed(4)}`;
        s.dataset.p = String(p[id]);
        s.style.background = heat(1 - p[id]);
        frag.appendChild(s);
        logits = step(n, st, id);
      }
      out.replaceChildren(frag);
    } catch (err) {
      out.textContent = `Error: ${err.message}`;
    }
  }

  // ----------------------------------------------------------------------- wiring
  function init() {
    $("title").textContent = `${META.task} · ${META.models.map((m) => m.name).join(", ")}`;
    $("source").textContent = `Input: ${META.source}, ${T} steps.` +
      (META.serve ? " Served: the rows load from the server as views need them." : "");
    for (const note of META.notes) {
      const li = document.createElement("li");
      li.textContent = note;
      $("notes").appendChild(li);
    }
    $("input").hidden = META.text === null;
    $("series").hidden = META.text !== null;
    fillSelect($("model"), META.models.map((m, k) => [k, `${m.name} (${m.cell})`]));
    fillLayerChoices();
    fillLayer();
    $("slider").max = String(T - 1);
    const redraw = () => Promise.all([drawCells(), drawDiagrams()]).catch(fail);
    $("model").onchange = () => {
      state.m = Number($("model").value);
      state.l = 0;
      fillLayerChoices();
      fillLayer();
      redraw();
    };
    const chooseLayer = () => {
      state.l = layerIndex(state.m, Number($("layer").value), $("direction").value);
      fillLayer();
      redraw();
    };
    $("layer").onchange = chooseLayer;
    $("direction").onchange = chooseLayer;
    $("group").onchange = () => drawDiagrams().catch(fail);
    $("group-k").oninput = () => drawDiagrams().catch(fail);
    $("quantity").onchange = () => { state.q = $("quantity").value; fillLayer(); redraw(); };
    $("rank").onchange = () => { state.rank = $("rank").value; fillUnits(); redraw(); };
    $("units").onchange = () => { state.unit = Number($("units").value); redraw(); };
    const onHover = (e) => hover(stepAt(e)).catch(fail);
    $("input").addEventListener("mouseover", onHover);
    $("series").addEventListener("mousemove", onHover);
    $("connect").addEventListener("mouseover", (e) => {
      const t = stepAt(e);
      if (t !== null) drawConnect(t);
    });
    $("connect").addEventListener("mousemove", (e) => {
      const t = stepAt(e);
      if (t !== null) drawConnect(t);
    });
    let dragFrom = null;
    const dragTarget = $(META.text !== null ? "input" : "series");
    dragTarget.addEventListener("mousedown", (e) => { dragFrom = stepAt(e); });
    dragTarget.addEventListener("mouseup", (e) => {
      const t = stepAt(e);
      if (dragFrom === null || t === null) return;
      $("span-from").value = String(Math.min(dragFrom, t));
      $("span-to").value = String(Math.max(dragFrom, t));
      dragFrom = null;
    });
    $("match").onclick = () => match().catch(fail);
    $("slider").oninput = () => setStep(Number($("slider").value)).catch(fail);
    document.addEventListener("keydown", (e) => {
      if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName) &&
          document.activeElement !== $("slider")) return;
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault();
        setStep(state.t + (e.key === "ArrowRight" ? 1 : -1)).catch(fail);
      }
    });
    buildDiagrams();
    buildConnect();
    buildStats();
    const samplers = META.models.map((m, k) => [k, m.name]).filter(([k]) =>
      META.models[k].weights);
    if (samplers.length) {
      fillSelect($("sample-model"), samplers);
      $("sample").onclick = sample;
    } else {
      $("view-sample").hidden = true;
    }
    redraw().then(() => { document.body.dataset.ready = "1"; });
  }

  window.rnnlabExplorer = { META, state, timings, nextProbs, setStep, unitRow };
  try {
    init();
  } catch (err) {
    fail(err);
  }
})();
