// powcoord dashboard: loads the recent history, then follows the server's
// event stream (/api/events): a status snapshot every second, a block
// event for every new block.
"use strict";

const state = {
  samples: [],        // [{t, hashrate, difficulty, height, sessions, workers}]
  blocks: [],         // newest last, as /api/blocks
  targetBlock: 600,   // seconds
  maxSamples: 3600,
  workerColors: {},
  dirty: true,
};

const $ = id => document.getElementById(id);

function fmtRate(h) {
  const u = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  let i = 0;
  while (h >= 1000 && i < u.length - 1) { h /= 1000; i++; }
  return h.toFixed(h >= 100 ? 0 : h >= 10 ? 1 : 2) + " " + u[i];
}
function fmtNum(v) {
  if (v === 0) { return "0"; }
  if (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-2) { return v.toExponential(2); }
  return Number(v.toPrecision(4)).toString();
}
function fmtDur(s) {
  if (!isFinite(s)) { return "–"; }
  s = Math.max(0, s);
  if (s < 60) { return s.toFixed(s < 10 ? 1 : 0) + " s"; }
  if (s < 3600) { return Math.floor(s / 60) + " m " + Math.floor(s % 60) + " s"; }
  if (s < 86400) { return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " m"; }
  return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
}
function ago(iso) {
  if (!iso || iso.startsWith("0001-")) { return "–"; }
  return fmtDur((Date.now() - Date.parse(iso)) / 1000) + " ago";
}
function timeOf(iso) {
  if (!iso || iso.startsWith("0001-")) { return "–"; }
  return new Date(iso).toLocaleTimeString();
}
function td(text, cls) {
  const e = document.createElement("td");
  e.textContent = text;
  if (cls) { e.className = cls; }
  return e;
}
function workerColor(name) {
  if (!(name in state.workerColors)) {
    const n = Object.keys(state.workerColors).length;
    state.workerColors[name] = Charts.palette[(n + 1) % Charts.palette.length];
  }
  return state.workerColors[name];
}

function addSample(s) {
  const last = state.samples[state.samples.length - 1];
  if (last && last.t >= s.t) { return; }
  state.samples.push(s);
  if (state.samples.length > state.maxSamples) { state.samples.shift(); }
  state.dirty = true;
}

function blockRow(b) {
  const tr = document.createElement("tr");
  tr.dataset.height = b.height;
  tr.append(td(b.height), td(b.hash, "hash"), td(b.finder || "–"), td(timeOf(b.time)),
    td(b.interval_seconds == null ? "–" : fmtDur(b.interval_seconds)));
  return tr;
}

function addBlock(b) {
  const last = state.blocks[state.blocks.length - 1];
  if (last && b.height <= last.height) { return; }
  if (b.interval_seconds == null && last && last.height === b.height - 1) {
    b.interval_seconds = (Date.parse(b.time) - Date.parse(last.time)) / 1000;
  }
  state.blocks.push(b);
  if (state.blocks.length > 500) { state.blocks.shift(); }
  const body = $("blocks");
  body.prepend(blockRow(b));
  while (body.rows.length > 200) { body.deleteRow(body.rows.length - 1); }
  $("blocks-count").textContent = "(" + body.rows.length + " shown)";
  state.dirty = true;
}

function renderStatus(st) {
  $("t-height").textContent = st.height;
  $("t-diff").textContent = fmtNum(st.difficulty);
  $("t-rate").textContent = fmtRate(st.hashrate);
  $("t-sessions").textContent = st.sessions;
  $("t-blocks").textContent = st.blocks_found + " / " + (st.blocks_orphaned || 0) + " / " + st.blocks_rejected;
  $("t-jobage").textContent = fmtDur(st.job_age_seconds);
  $("t-uptime").textContent = fmtDur(st.uptime_seconds);

  const src = st.source || {};
  const dl = $("source-dl");
  dl.replaceChildren();
  const rows = [
    ["kind", src.kind === "node" ? "Bitcoin node" : "embedded chain"],
    ["healthy", src.healthy ? "yes" : "NO", src.healthy ? "good" : "bad"],
    ["tip height", src.tip_height],
    ["tip", src.tip_hash],
    ["last template", ago(src.last_template)],
  ];
  if (src.endpoint) { rows.push(["node", src.endpoint]); }
  if (src.network) { rows.push(["network", src.network]); }
  if (src.error) { rows.push(["error", src.error, "bad"]); }
  for (const [k, v, cls] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v == null ? "–" : v;
    if (cls) { dd.className = cls; }
    dl.append(dt, dd);
  }

  const body = $("workers");
  body.replaceChildren();
  const workers = (st.workers || []).slice().sort((a, b) => a.name.localeCompare(b.name));
  for (const w of workers) {
    const tr = document.createElement("tr");
    const rej = Object.entries(w.rejected || {}).map(([k, v]) => k + " " + v).join(", ");
    tr.append(td(w.name), td(w.sessions), td(fmtRate(w.hashrate)), td(fmtNum(w.difficulty)), td(w.accepted),
      td(w.rejected_total ? w.rejected_total + " (" + rej + ")" : "0"), td(w.blocks),
      td(fmtBest(w.best_session)), td(fmtBest(w.best_since_block)), td(fmtBest(w.best_all_time)),
      td(ago(w.last_share)), td(w.sessions > 0 ? timeOf(w.connected_since) : "offline"));
    body.append(tr);
  }
  renderBest(st.best_by_address || []);
}

function fmtBest(v) { return v ? fmtNum(v) : "–"; }

// renderBest fills the best-shares-by-address table (records may be null).
function renderBest(list) {
  const body = $("best-addresses");
  body.replaceChildren();
  for (const a of list) {
    const tr = document.createElement("tr");
    const d = r => r ? fmtNum(r.difficulty) : "–";
    tr.append(td(a.name), td(d(a.session)), td(d(a.since_block)), td(d(a.all_time)),
      td(a.all_time ? ago(a.all_time.time) : "–"));
    body.append(tr);
  }
}

function renderSimulation(sim) {
  const sec = $("simulation");
  if (!sim) { sec.hidden = true; return; }
  sec.hidden = false;
  const T = sim.target_block_seconds;
  $("sim-text").textContent = fmtDur(sim.elapsed_seconds) + " so far: " + sim.blocks + " blocks, mean interval " +
    fmtDur(sim.mean_interval_seconds) + " (target " + fmtDur(T) + "); difficulty " + fmtNum(sim.start_difficulty) +
    " → " + fmtNum(sim.difficulty) + ". Blocks arrive as a Poisson process, so their intervals should follow an " +
    "exponential distribution, and each agent should find blocks in proportion to the hashes it does.";
  const hist = sim.histogram;
  if (hist && hist.counts) {
    const items = hist.counts.map((c, i) => ({ label: fmtNum(hist.bin_seconds * i) + (i === hist.counts.length - 1 ? "s+" : "s"), y: c }));
    Charts.bars($("chart-histogram"), items, {
      overlay: hist.expected, overlayColor: "#7ee787", emptyText: "no intervals yet",
      legend: [{ label: "observed", color: Charts.palette[0] }, { label: "exponential, mean = target", color: "#7ee787" }],
    });
  }
  const agents = sim.agents || [];
  Charts.bars($("chart-shares"), agents.map(a => ({ label: a.name, y: a.hashrate_share * 100, y2: a.block_share * 100 })), {
    yFmt: v => v + "%", color: Charts.palette[1], color2: Charts.palette[0], emptyText: "no agents",
    legend: [{ label: "share of hashrate", color: Charts.palette[1] }, { label: "share of blocks", color: Charts.palette[0] }],
  });
  const body = $("sim-agents");
  body.replaceChildren();
  for (const a of agents) {
    const tr = document.createElement("tr");
    tr.append(td(a.name), td(a.speed || "–"), td(a.online ? "yes" : "no"), td(fmtRate(a.hashrate)),
      td((a.hashrate_share * 100).toFixed(1) + "%"), td(a.blocks), td((a.block_share * 100).toFixed(1) + "%"));
    body.append(tr);
  }
}

function renderCharts() {
  if (!state.dirty) { return; }
  state.dirty = false;
  const S = state.samples;
  const names = new Set();
  for (const s of S) { for (const n in (s.workers || {})) { names.add(n); } }
  const series = [{ label: "total", color: Charts.palette[0], width: 2.5, data: S.map(s => [s.t, s.hashrate]) }];
  for (const n of [...names].sort()) {
    series.push({ label: n, color: workerColor(n), data: S.map(s => [s.t, (s.workers || {})[n] ?? NaN]) });
  }
  Charts.lines($("chart-hashrate"), series, { yFmt: fmtRate });

  const T = state.targetBlock;
  Charts.lines($("chart-difficulty"), [
    { label: "difficulty", color: Charts.palette[0], width: 2.5, data: S.map(s => [s.t, s.difficulty]) },
    { label: "called for by hashrate", color: Charts.palette[1], dash: [4, 3], data: S.map(s => [s.t, s.hashrate * T / 4294967296]) },
  ], { yFmt: fmtNum });

  const withIv = state.blocks.filter(b => b.interval_seconds != null).slice(-120);
  const items = withIv.map(b => ({ label: String(b.height), y: b.interval_seconds }));
  let sum = 0;
  const mean = withIv.map((b, i) => { sum += b.interval_seconds; return sum / (i + 1); });
  Charts.bars($("chart-intervals"), items, {
    yFmt: v => v + "s", overlay: mean, overlayColor: "#d2a8ff",
    hlines: [{ y: T, label: "target " + fmtDur(T), color: "#7ee787" }],
    legend: [{ label: "interval", color: Charts.palette[0] }, { label: "running mean", color: "#d2a8ff" }, { label: "target " + fmtDur(T), color: "#7ee787" }],
  });
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
  return r.json();
}

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill on"; document.body.dataset.sse = "open"; };
  es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "pill off"; document.body.dataset.sse = "error"; };
  es.addEventListener("status", ev => {
    const d = JSON.parse(ev.data);
    addSample(d.sample);
    renderStatus(d.status);
    if (d.simulation) { renderSimulation(d.simulation); }
  });
  es.addEventListener("block", ev => addBlock(JSON.parse(ev.data)));
}

async function start() {
  try {
    const [hist, blocks, st, sim] = await Promise.all([
      getJSON("/api/history"), getJSON("/api/blocks?last=200"), getJSON("/api/status"), getJSON("/api/simulation"),
    ]);
    state.targetBlock = hist.target_block_seconds || 600;
    for (const s of hist.samples || []) { addSample(s); }
    for (const b of blocks || []) { addBlock(b); }
    renderStatus(st);
    renderSimulation(sim);
  } catch (e) {
    $("conn").textContent = "load failed: " + e.message;
  }
  connect();
  setInterval(renderCharts, 1000);
  renderCharts();
  window.addEventListener("resize", () => { state.dirty = true; renderCharts(); });
}

start();
