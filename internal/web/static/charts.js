// Small canvas charts for the powcoord dashboard: line charts over time
// and bar charts, with axes, a legend and reference lines. Each chart sets
// data-points on its canvas to the number of data points it drew.
"use strict";

const Charts = (() => {
  const palette = ["#f7931a", "#58a6ff", "#7ee787", "#d2a8ff", "#ff7b72", "#ffa657", "#79c0ff", "#56d4dd", "#e3b341", "#f778ba"];

  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 230;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, w, h };
  }

  // niceTicks returns about n round values covering [lo, hi].
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || 10 * mag;
    // From the first multiple of step at or above lo to the first at or
    // above hi, so the top tick always clears the data.
    const out = [];
    const first = Math.ceil(lo / step - 1e-9), last = Math.ceil(hi / step - 1e-9);
    for (let i = first; i <= last; i++) { out.push(Number((i * step).toPrecision(12))); }
    return out;
  }

  function frame(ctx, w, h, pad, yTicks, y, yFmt) {
    ctx.strokeStyle = "#2a3541"; ctx.fillStyle = "#8a96a3"; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const t of yTicks) {
      const py = y(t);
      ctx.beginPath(); ctx.moveTo(pad.l, py); ctx.lineTo(w - pad.r, py); ctx.stroke();
      ctx.fillText(yFmt(t), pad.l - 4, py);
    }
  }

  function legend(ctx, w, items) {
    let x = 50;
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    for (const it of items) {
      ctx.fillStyle = it.color; ctx.fillRect(x, 6, 10, 3);
      ctx.fillStyle = "#d8dee6"; ctx.fillText(it.label, x + 14, 8);
      x += 22 + ctx.measureText(it.label).width;
      if (x > w - 60) { break; }
    }
  }

  function empty(ctx, w, h, text) {
    ctx.fillStyle = "#8a96a3"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(text, w / 2, h / 2);
  }

  function timeLabel(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  // lines draws series [{label, color, dash, data: [[x, y], ...]}] with x
  // in Unix milliseconds; hlines [{y, label, color}] are reference lines.
  function lines(canvas, series, opts) {
    const { ctx, w, h } = setup(canvas);
    const pad = { l: 64, r: 10, t: 18, b: 20 };
    let n = 0, x0 = Infinity, x1 = -Infinity, y1 = 0;
    for (const s of series) {
      for (const [x, y] of s.data) {
        n++; x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        if (isFinite(y)) { y1 = Math.max(y1, y); }
      }
    }
    for (const hl of opts.hlines || []) { y1 = Math.max(y1, hl.y); }
    canvas.dataset.points = String(n);
    if (n === 0) { empty(ctx, w, h, "waiting for data…"); return; }
    if (x1 === x0) { x1 = x0 + 1000; }
    const yTicks = niceTicks(0, y1 * 1.08 || 1, 4);
    const yMax = yTicks[yTicks.length - 1];
    const x = v => pad.l + (v - x0) / (x1 - x0) * (w - pad.l - pad.r);
    const y = v => h - pad.b - v / yMax * (h - pad.t - pad.b);
    frame(ctx, w, h, pad, yTicks, y, opts.yFmt || String);
    ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillStyle = "#8a96a3";
    const xt = Math.max(1, Math.min(6, Math.floor((w - pad.l - pad.r) / 90)));
    for (let i = 0; i <= xt; i++) {
      const v = x0 + (x1 - x0) * i / xt;
      ctx.fillText(timeLabel(v), Math.min(Math.max(x(v), pad.l + 20), w - 30), h - pad.b + 4);
    }
    for (const hl of opts.hlines || []) {
      ctx.strokeStyle = hl.color; ctx.setLineDash([5, 4]);
      ctx.beginPath(); ctx.moveTo(pad.l, y(hl.y)); ctx.lineTo(w - pad.r, y(hl.y)); ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const s of series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5; ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      let started = false;
      for (const [px, py] of s.data) {
        if (!isFinite(py)) { started = false; continue; }
        if (started) { ctx.lineTo(x(px), y(py)); } else { ctx.moveTo(x(px), y(py)); started = true; }
      }
      ctx.stroke(); ctx.setLineDash([]);
    }
    legend(ctx, w, series.concat(opts.hlines || []));
  }

  // bars draws bars [{label, y, color}] with optional overlay points
  // [{y}] (one per bar, joined by a line) and reference lines.
  function bars(canvas, items, opts) {
    const { ctx, w, h } = setup(canvas);
    const pad = { l: 50, r: 10, t: 18, b: 20 };
    canvas.dataset.points = String(items.length);
    if (items.length === 0) { empty(ctx, w, h, opts.emptyText || "no blocks yet"); return; }
    let y1 = 0;
    for (const it of items) { y1 = Math.max(y1, it.y, it.y2 || 0); }
    for (const o of opts.overlay || []) { y1 = Math.max(y1, o); }
    for (const hl of opts.hlines || []) { y1 = Math.max(y1, hl.y); }
    const yTicks = niceTicks(0, y1 * 1.08 || 1, 4);
    const yMax = yTicks[yTicks.length - 1];
    const y = v => h - pad.b - v / yMax * (h - pad.t - pad.b);
    frame(ctx, w, h, pad, yTicks, y, opts.yFmt || String);
    const slot = (w - pad.l - pad.r) / items.length;
    const pair = items.some(it => it.y2 !== undefined);
    const bw = Math.max(1, slot * (pair ? 0.38 : 0.75));
    const every = Math.ceil(items.length / Math.max(1, Math.floor((w - pad.l) / 48)));
    items.forEach((it, i) => {
      const cx = pad.l + slot * (i + 0.5);
      ctx.fillStyle = it.color || opts.color || palette[0];
      if (pair) {
        ctx.fillRect(cx - bw, y(it.y), bw, y(0) - y(it.y));
        ctx.fillStyle = opts.color2 || palette[1];
        ctx.fillRect(cx, y(it.y2), bw, y(0) - y(it.y2));
      } else {
        ctx.fillRect(cx - bw / 2, y(it.y), bw, y(0) - y(it.y));
      }
      if (i % every === 0) {
        ctx.fillStyle = "#8a96a3"; ctx.textAlign = "center"; ctx.textBaseline = "top";
        ctx.fillText(it.label, cx, h - pad.b + 4);
      }
    });
    if (opts.overlay) {
      ctx.strokeStyle = opts.overlayColor || "#d8dee6"; ctx.lineWidth = 2; ctx.beginPath();
      opts.overlay.forEach((v, i) => {
        const cx = pad.l + slot * (i + 0.5);
        if (i === 0) { ctx.moveTo(cx, y(v)); } else { ctx.lineTo(cx, y(v)); }
      });
      ctx.stroke();
    }
    for (const hl of opts.hlines || []) {
      ctx.strokeStyle = hl.color; ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y(hl.y)); ctx.lineTo(w - pad.r, y(hl.y)); ctx.stroke();
      ctx.setLineDash([]);
    }
    legend(ctx, w, opts.legend || []);
  }

  return { lines, bars, palette };
})();
