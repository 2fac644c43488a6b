// Worker history panel: the per-minute hashrate of one worker or address
// (GET /api/workers/{name}) over the last three hours, with its 1 h
// average, and the averages over 1 min to 7 days. The choice lists the
// workers with a share in the last day (/api/workers?minutes=1440, gone
// ones too) and their addresses; the chart is read again every 30 s.
// The canvas's data-worker says whose history it shows.
"use strict";

(() => {
  const sel = document.getElementById("history-worker");
  const canvas = document.getElementById("chart-worker-history");
  const minutes = 180;
  let names = [];

  async function refreshNames() {
    let ws;
    try { ws = await getJSON("/api/workers?minutes=1440"); } catch (e) { return; }
    const set = new Set();
    for (const w of ws.workers || []) {
      set.add(w.worker);
      const dot = w.worker.indexOf(".");
      if (dot > 0) { set.add(w.worker.slice(0, dot)); }
    }
    const next = [...set].sort();
    if (next.join("\n") === names.join("\n")) { return; }
    const keep = sel.value;
    names = next;
    sel.replaceChildren(...names.map(n => { const o = document.createElement("option"); o.value = o.textContent = n; return o; }));
    if (names.includes(keep)) { sel.value = keep; }
    if (sel.value !== canvas.dataset.worker) { draw(); }
  }

  async function draw() {
    const name = sel.value;
    if (!name) { return; }
    let h;
    try {
      h = await getJSON("/api/workers/" + encodeURIComponent(name) + "?minutes=" + minutes);
    } catch (e) {
      canvas.dataset.worker = name;
      Charts.lines(canvas, [], {});
      return;
    }
    // Every minute of the span, 0 where the series has none; the minute
    // still filling is left out (its rate is not known yet).
    const by = new Map(h.series.map(m => [Date.parse(m.minute), m]));
    const now = Math.floor(Date.parse(h.now) / 60000) * 60000;
    const first = h.series.length ? Math.max(Date.parse(h.series[0].minute), now - (minutes - 1) * 60000) : now;
    const rate = [];
    for (let t = first; t < now; t += 60000) {
      const m = by.get(t);
      rate.push([t, m ? m.hashrate : 0]);
    }
    const avg = h.averages.find(a => a.span === "1h");
    Charts.lines(canvas, [{ label: name + " per minute", color: workerColor(name), width: 2, data: rate }], {
      yFmt: fmtRate, hlines: avg && avg.hashrate > 0 ? [{ y: avg.hashrate, label: "1 h average", color: "#7ee787" }] : [],
    });
    canvas.dataset.worker = name;
    const body = document.getElementById("history-averages");
    const row = (label, f) => {
      const tr = document.createElement("tr");
      tr.append(td(label), ...h.averages.map(a => td(f(a))));
      return tr;
    };
    body.replaceChildren(
      row("hashrate", a => fmtRate(a.hashrate)),
      row("accepted", a => String(a.accepted)),
      row("rejected", a => String(a.rejected)),
    );
  }

  sel.addEventListener("change", draw);
  refreshNames();
  setInterval(refreshNames, 10000);
  setInterval(draw, 30000);
  window.addEventListener("resize", draw);
})();
