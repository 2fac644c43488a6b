// powcoord dashboard: the payout panels. The PPLNS window (or, in solo
// mode, each address's part of the recent work) from /api/miners, and in
// the demo each agent's income under solo and PPLNS from the simulation
// summary's income member. Polled every 2 s.
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const cell = (text, cls) => { const e = document.createElement("td"); e.textContent = text; if (cls) { e.className = cls; } return e; };
  const btc = sat => (sat / 1e8).toFixed(8).replace(/0{1,4}$/, "") + " BTC";
  const pct = f => (f * 100).toFixed(2) + "%";

  async function get(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
    return r.json();
  }

  function renderWindow(list) {
    const body = $("payout-window");
    body.replaceChildren();
    const pplns = list.length > 0 && list[0].payout_mode === "pplns";
    $("payout-mode").textContent = list.length === 0 ? "no share work in the window yet" :
      (pplns ? "PPLNS: the next block (height " + list[0].window_height + ", " + btc(list[0].next_value) + ") pays" :
        "solo: each block pays its finder; the chance below is each address's part of the recent work") +
      " — window " + list[0].window_total.toPrecision(4) + " of " + list[0].window_size.toPrecision(4) + " difficulty";
    for (const m of list) {
      const tr = document.createElement("tr");
      tr.append(cell(m.address), cell(m.window_work.toPrecision(4)), cell(pct(m.window_share)),
        cell(pplns ? btc(m.next_amount) : "–"), cell(pct(m.next_fraction)), cell(btc(m.paid_total)));
      body.append(tr);
    }
  }

  function renderIncome(sim) {
    const sec = $("income");
    const inc = sim && sim.income;
    if (!inc) { sec.hidden = true; return; }
    sec.hidden = false;
    const start = Date.now() - sim.elapsed_seconds * 1000;
    const series = [];
    inc.agents.forEach((a, i) => {
      const color = Charts.palette[(i + 1) % Charts.palette.length];
      const pts = k => [[start, 0]].concat(a.curve.map(p => [start + p.t * 1000, p[k] / 1e8]));
      series.push({ label: a.name + " solo", color, dash: [4, 3], data: pts("solo") });
      if (inc.pplns) { series.push({ label: a.name + " PPLNS", color, width: 2.5, data: pts("pplns") }); }
    });
    Charts.lines($("chart-income"), series, { yFmt: v => v + " BTC" });
    $("income-note").textContent = "Income per " + fmtBins(inc) + ": mean, standard deviation and cv (sd ÷ mean) over " +
      inc.bins + " complete bins" + (inc.pplns ? "; solo is what each block would have paid its finder, PPLNS what it paid." : ".");
    const body = $("sim-income");
    body.replaceChildren();
    for (const a of inc.agents) {
      const tr = document.createElement("tr");
      const cols = s => [cell(btc(s.total)), cell(btc(s.per_bin_mean)), cell(btc(s.per_bin_sd)), cell(s.per_bin_mean ? (s.per_bin_sd / s.per_bin_mean).toFixed(2) : "–")];
      tr.append(cell(a.name), ...cols(a.solo), ...(inc.pplns ? cols(a.pplns) : [cell("–"), cell("–"), cell("–"), cell("–")]));
      body.append(tr);
    }
  }

  function fmtBins(inc) { return "6 blocks' time (" + inc.bin_seconds + " s)"; }

  async function tick() {
    try {
      renderWindow(await get("/api/miners"));
    } catch (e) {
      // Keep what is shown; say so only while nothing is.
      if (!$("payout-window").rows.length) { $("payout-mode").textContent = "payout window unavailable: " + e.message; }
    }
    try { renderIncome(await get("/api/simulation")); } catch (e) { /* no simulation */ }
  }
  tick();
  setInterval(tick, 2000);
})();
