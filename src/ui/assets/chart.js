// Time-series charts on a plain canvas: a min–max band with the mean line from bucketed reads,
// exponential smoothing with the raw line kept faint, log-scale y, step or wall-clock x, one
// crosshair reading every series at that x, a legend that hides and shows series, drag to zoom
// and CSV export. Series arrive as columns (typed arrays), so a redraw allocates little.

import { el, num, saveBlob } from "./lib.js?v={{lib.js}}";

const PALETTE = ["#0b63c5", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#1b998b", "#8d6a3f", "#c2185b", "#37474f", "#7cb342"];
const PAD = { left: 60, right: 14, top: 10, bottom: 30 };

/** A metric read (`points` or `buckets`) as columns: x (step), y (mean or value), band, time. */
export function columns(label, answer, color) {
  const s = { label, color, hidden: false, raw: answer };
  if (answer.buckets) {
    const b = answer.buckets;
    s.x = Float64Array.from(b, (p) => (p.step_start + p.step_end) / 2);
    s.y = Float64Array.from(b, (p) => p.mean);
    s.lo = Float64Array.from(b, (p) => p.min);
    s.hi = Float64Array.from(b, (p) => p.max);
    s.t = null;
  } else {
    const p = answer.points || [];
    s.x = Float64Array.from(p, (q) => q.step);
    s.y = Float64Array.from(p, (q) => q.value);
    s.t = Float64Array.from(p, (q) => Date.parse(q.timestamp));
    s.lo = s.hi = null;
  }
  return s;
}

export const colorOf = (i) => PALETTE[i % PALETTE.length];

/** Exponential moving average, debiased as TensorBoard does, over `y`. */
export function smooth(y, weight) {
  if (!(weight > 0)) return y;
  const out = new Float64Array(y.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < y.length; i++) {
    last = last * weight + (1 - weight) * y[i];
    n += 1;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

/** About `count` round tick values covering [lo, hi]. */
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** The index in sorted `xs` nearest to `x`. */
function nearest(xs, x) {
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid;
    else hi = mid;
  }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}

/** An axis label: large values shortened (250k, 1.5M). */
function tickLabel(v) {
  const a = Math.abs(v);
  if (a >= 1e6 && Number.isInteger(v / 1e5)) return `${v / 1e6}M`;
  if (a >= 1e4 && Number.isInteger(v / 100)) return `${v / 1e3}k`;
  return num(v);
}

function timeLabel(ms, span) {
  const d = new Date(ms).toISOString();
  return span > 2 * 86400e3 ? d.slice(5, 16).replace("T", " ") : d.slice(11, span > 600e3 ? 16 : 19);
}

export class Chart {
  /**
   * title: the chart's name; xLabel: what x is ("step", "version"); onZoom(range | null): a
   * drag picked [from, to] in x units (null: reset); markers: draw each point as a dot.
   */
  constructor({ title, xLabel = "step", onZoom = null, markers = false, height = 240 }) {
    this.title = title;
    this.xLabel = xLabel;
    this.onZoom = onZoom;
    this.markers = markers;
    this.height = height;
    this.series = [];
    this.options = { smooth: 0, log: false, time: false };
    this.zoomed = false;
    this.hover = null;
    this.drag = null;
    this.canvas = el("canvas", { role: "img", tabindex: "0", "aria-label": `${title} chart: arrow keys move the crosshair, + zooms in around it, - or Escape resets the zoom` });
    this.legend = el("div", { class: "legend", role: "group", "aria-label": `${title} series` });
    this.readout = el("div", { class: "readout mono" });
    this.note = el("span", { class: "muted" });
    this.hint = el("span", { class: "muted" });
    this.resetButton = el("button", { type: "button", hidden: true, onclick: () => this.onZoom && this.onZoom(null) }, "Reset zoom");
    const csv = el("button", { type: "button", onclick: () => this.exportCsv() }, "CSV");
    this.root = el("figure", { class: "chart" },
      el("figcaption", {}, el("strong", {}, title), " ", this.note, this.hint, el("span", { class: "chart-tools" }, this.resetButton, csv)),
      el("div", { class: "plot" }, this.canvas), this.legend, this.readout);
    this.canvas.addEventListener("mousemove", (e) => this.pointer(e));
    this.canvas.addEventListener("mouseleave", () => { this.hover = null; this.drag = null; this.draw(); this.showReadout(); });
    this.canvas.addEventListener("mousedown", (e) => { if (this.onZoom) this.drag = { from: this.offsetX(e), to: this.offsetX(e) }; });
    this.canvas.addEventListener("mouseup", () => this.endDrag());
    this.canvas.addEventListener("keydown", (e) => this.key(e));
    this.canvas.addEventListener("blur", () => { this.hover = null; this.draw(); this.showReadout(); });
    new ResizeObserver(() => this.draw()).observe(this.root);
  }

  /** How many points a read should ask for: about one per pixel. */
  width() {
    return Math.max(200, Math.round(this.root.clientWidth || 800));
  }

  set(series, { zoomed = false, note = "" } = {}) {
    const hidden = new Set(this.series.filter((s) => s.hidden).map((s) => s.label));
    for (const s of series) s.hidden = hidden.has(s.label);
    this.series = series;
    this.zoomed = zoomed;
    this.note.textContent = note;
    this.resetButton.hidden = !zoomed;
    this.legend.replaceChildren(...series.map((s) => {
      const b = el("button", { type: "button", class: "legend-item", "aria-pressed": String(!s.hidden) },
        el("span", { class: "swatch", "data-color": s.color }), s.label);
      b.querySelector(".swatch").style.background = s.color;
      b.addEventListener("click", () => {
        s.hidden = !s.hidden;
        b.setAttribute("aria-pressed", String(!s.hidden));
        this.draw();
      });
      return b;
    }));
    this.draw();
  }

  setOptions(options) {
    Object.assign(this.options, options);
    this.draw();
  }

  /** Wall-clock x only when every shown series has times (raw points, not buckets). */
  useTime() {
    const shown = this.visible();
    return this.options.time && shown.length > 0 && shown.every((s) => s.t);
  }

  visible() {
    return this.series.filter((s) => !s.hidden && s.x.length);
  }

  offsetX(e) {
    return e.clientX - this.canvas.getBoundingClientRect().left;
  }

  pointer(e) {
    const px = this.offsetX(e);
    if (this.drag) this.drag.to = px;
    this.hover = px;
    this.draw();
    this.showReadout();
  }

  /** The keyboard's crosshair and zoom. */
  key(e) {
    const f = this.frame;
    if (!f) return;
    const step = f.pw / (e.shiftKey ? 10 : 50);
    const at = this.hover === null ? PAD.left + f.pw / 2 : this.hover;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      this.hover = Math.min(PAD.left + f.pw, Math.max(PAD.left, at + (e.key === "ArrowLeft" ? -step : step)));
      this.draw();
      this.showReadout();
    } else if ((e.key === "+" || e.key === "=") && this.onZoom && !f.time) {
      const quarter = f.pw / 4;
      this.onZoom([Math.floor(f.invX(Math.max(PAD.left, at - quarter))), Math.ceil(f.invX(Math.min(PAD.left + f.pw, at + quarter)))]);
    } else if ((e.key === "-" || e.key === "Escape") && this.onZoom && this.zoomed) {
      this.onZoom(null);
    } else {
      return;
    }
    e.preventDefault();
  }

  endDrag() {
    const d = this.drag;
    this.drag = null;
    if (!d || Math.abs(d.to - d.from) < 6 || !this.frame || this.frame.time) {
      this.draw();
      return;
    }
    const a = this.frame.invX(Math.min(d.from, d.to));
    const b = this.frame.invX(Math.max(d.from, d.to));
    this.onZoom([Math.floor(a), Math.ceil(b)]);
  }

  /** The scales for the shown series at the canvas's size. */
  layout(w, h) {
    const shown = this.visible();
    const time = this.useTime();
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const log = this.options.log;
    for (const s of shown) {
      const xs = time ? s.t : s.x;
      x0 = Math.min(x0, xs[0]);
      x1 = Math.max(x1, xs[xs.length - 1]);
      for (const col of [s.lo || s.y, s.hi || s.y]) {
        for (let i = 0; i < col.length; i++) {
          const v = col[i];
          if (!Number.isFinite(v) || (log && v <= 0)) continue;
          if (v < y0) y0 = v;
          if (v > y1) y1 = v;
        }
      }
    }
    if (!Number.isFinite(x0)) return null;
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    const fy = (v) => (log ? Math.log10(v) : v);
    let ly0 = fy(y0), ly1 = fy(y1);
    if (!Number.isFinite(ly0)) return null;
    if (ly1 === ly0) { ly0 -= 0.5; ly1 += 0.5; }
    const padY = (ly1 - ly0) * 0.05;
    ly0 -= padY;
    ly1 += padY;
    const pw = w - PAD.left - PAD.right;
    const ph = h - PAD.top - PAD.bottom;
    return {
      time, log, x0, x1, ly0, ly1, pw, ph,
      X: (x) => PAD.left + ((x - x0) / (x1 - x0)) * pw,
      Y: (v) => PAD.top + (1 - (fy(v) - ly0) / (ly1 - ly0)) * ph,
      invX: (px) => x0 + ((px - PAD.left) / pw) * (x1 - x0),
    };
  }

  draw() {
    const w = Math.max(200, this.root.clientWidth || 800);
    const h = this.height;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const f = this.layout(w, h);
    this.frame = f;
    this.hint.textContent = this.options.time && f && !f.time ? " (wall-clock x needs raw points: zoom in)" : "";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#5b6570";
    if (!f) {
      ctx.fillText(this.series.length ? "Every series is hidden." : "No points.", PAD.left, PAD.top + 20);
      return;
    }
    this.axes(ctx, f, w, h);
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top, f.pw, f.ph);
    ctx.clip();
    for (const s of this.visible()) this.plot(ctx, f, s);
    if (this.drag) {
      ctx.fillStyle = "rgba(11, 99, 197, 0.12)";
      ctx.fillRect(Math.min(this.drag.from, this.drag.to), PAD.top, Math.abs(this.drag.to - this.drag.from), f.ph);
    } else if (this.hover !== null && this.hover >= PAD.left) {
      this.crosshair(ctx, f);
    }
    ctx.restore();
  }

  axes(ctx, f, w, h) {
    ctx.strokeStyle = "#e3e8ee";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yTicks = f.log
      ? ticks(Math.floor(f.ly0), Math.ceil(f.ly1), 5).filter(Number.isInteger).map((e) => 10 ** e)
      : ticks(f.ly0, f.ly1, 5);
    for (const v of yTicks) {
      const y = f.Y(v);
      if (y < PAD.top - 1 || y > h - PAD.bottom + 1) continue;
      ctx.beginPath();
      ctx.moveTo(PAD.left, y);
      ctx.lineTo(w - PAD.right, y);
      ctx.stroke();
      ctx.fillText(num(v), PAD.left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const span = f.x1 - f.x0;
    const xTicks = ticks(f.x0, f.x1, Math.max(2, Math.floor(f.pw / 110)));
    // Steps and versions are whole numbers.
    for (const v of f.time ? xTicks : xTicks.filter(Number.isInteger)) {
      const x = f.X(v);
      ctx.beginPath();
      ctx.moveTo(x, PAD.top);
      ctx.lineTo(x, h - PAD.bottom);
      ctx.stroke();
      ctx.fillText(f.time ? timeLabel(v, span) : tickLabel(v), x, h - PAD.bottom + 6);
    }
    ctx.textAlign = "right";
    ctx.fillText(f.time ? "time (UTC)" : this.xLabel, w - PAD.right, h - 12);
  }

  plot(ctx, f, s) {
    const xs = f.time ? s.t : s.x;
    const n = xs.length;
    const ok = (v) => Number.isFinite(v) && (!f.log || v > 0);
    if (s.lo) {
      ctx.fillStyle = s.color;
      ctx.globalAlpha = 0.22;
      ctx.beginPath();
      let open = false;
      for (let i = 0; i < n; i++) if (ok(s.hi[i])) { ctx[open ? "lineTo" : "moveTo"](f.X(xs[i]), f.Y(s.hi[i])); open = true; }
      for (let i = n - 1; i >= 0; i--) if (ok(s.lo[i])) ctx.lineTo(f.X(xs[i]), f.Y(s.lo[i]));
      ctx.closePath();
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    const smoothed = smooth(s.y, this.options.smooth);
    const line = (ys, alpha, width) => {
      ctx.strokeStyle = s.color;
      ctx.globalAlpha = alpha;
      ctx.lineWidth = width;
      ctx.beginPath();
      let open = false;
      for (let i = 0; i < n; i++) {
        if (!ok(ys[i])) { open = false; continue; }
        ctx[open ? "lineTo" : "moveTo"](f.X(xs[i]), f.Y(ys[i]));
        open = true;
      }
      ctx.stroke();
      ctx.globalAlpha = 1;
    };
    if (smoothed !== s.y) line(s.y, 0.25, 1);
    line(smoothed, 1, 1.6);
    if (this.markers || n === 1) {
      ctx.fillStyle = s.color;
      for (let i = 0; i < n; i++) if (ok(smoothed[i])) ctx.fillRect(f.X(xs[i]) - 2.5, f.Y(smoothed[i]) - 2.5, 5, 5);
    }
  }

  /** For each shown series, the point nearest the pointer's x. */
  pick() {
    const f = this.frame;
    if (!f || this.hover === null) return null;
    const x = f.invX(this.hover);
    return this.visible().map((s) => {
      const xs = f.time ? s.t : s.x;
      const i = nearest(xs, x);
      const sm = smooth(s.y, this.options.smooth);
      return { s, i, x: xs[i], y: sm[i] };
    });
  }

  crosshair(ctx, f) {
    const picks = this.pick();
    if (!picks || !picks.length) return;
    ctx.strokeStyle = "#5b6570";
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(this.hover, PAD.top);
    ctx.lineTo(this.hover, PAD.top + f.ph);
    ctx.stroke();
    ctx.setLineDash([]);
    for (const p of picks) {
      if (!Number.isFinite(p.y) || (f.log && p.y <= 0)) continue;
      ctx.fillStyle = p.s.color;
      ctx.beginPath();
      ctx.arc(f.X(p.x), f.Y(p.y), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  showReadout() {
    const picks = this.pick();
    if (!picks || !picks.length) {
      this.readout.replaceChildren();
      return;
    }
    this.readout.replaceChildren(...picks.map((p) => {
      const b = p.s.lo ? p.s.raw.buckets[p.i] : null;
      const at = this.frame.time ? timeLabel(p.x, 0)
        : b ? `${this.xLabel} ${b.step_start}–${b.step_end}` : `${this.xLabel} ${num(p.x)}`;
      const band = p.s.lo ? ` [${num(p.s.lo[p.i])} … ${num(p.s.hi[p.i])}]` : "";
      const item = el("span", { class: "readout-item" }, el("span", { class: "swatch" }), `${p.s.label} @ ${at}: ${num(p.y)}${band}`);
      item.firstChild.style.background = p.s.color;
      return item;
    }));
  }

  /** The chart's data as CSV: what was read, one row per point or bucket. */
  exportCsv() {
    const rows = [];
    const q = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
    const bucketed = this.series.some((s) => s.raw.buckets);
    rows.push(bucketed ? "series,step_start,step_end,min,max,mean,last,count" : "series,step,value,timestamp");
    for (const s of this.series) {
      if (s.raw.buckets) {
        for (const b of s.raw.buckets) rows.push([s.label, b.step_start, b.step_end, b.min, b.max, b.mean, b.last, b.count].map(q).join(","));
      } else {
        for (const p of s.raw.points || []) {
          rows.push(bucketed
            ? [s.label, p.step, p.step, p.value, p.value, p.value, p.value, 1].map(q).join(",")
            : [s.label, p.step, p.value, p.timestamp || ""].map(q).join(","));
        }
      }
    }
    const name = `${this.title.replace(/[^A-Za-z0-9._-]+/g, "_")}.csv`;
    saveBlob(new Blob([rows.join("\n") + "\n"], { type: "text/csv" }), name);
  }
}

/** The controls every chart of a page shares, kept in the URL: smoothing, log y, x axis. */
export function chartControls(state, onChange) {
  const label = el("output", { for: "smooth" }, state.smooth.toFixed(2));
  const slider = el("input", { id: "smooth", type: "range", min: "0", max: "0.99", step: "0.01", value: String(state.smooth), "aria-label": "Smoothing" });
  slider.addEventListener("input", () => {
    label.textContent = Number(slider.value).toFixed(2);
    onChange({ smooth: Number(slider.value) });
  });
  const log = el("input", { id: "logy", type: "checkbox", checked: state.log });
  log.addEventListener("change", () => onChange({ log: log.checked }));
  const x = el("select", { id: "xaxis", "aria-label": "x axis" },
    el("option", { value: "step", selected: !state.time }, "x: step"),
    el("option", { value: "time", selected: state.time }, "x: wall-clock time"));
  x.addEventListener("change", () => onChange({ time: x.value === "time" }));
  return el("div", { class: "bar chart-controls" },
    el("label", { for: "smooth" }, "Smoothing"), slider, label,
    el("label", {}, log, " log y"), x);
}

/** Chart options from the URL (`smooth`, `log`, `x`). */
export function chartState(p) {
  const s = Number(p.get("smooth"));
  return { smooth: Number.isFinite(s) && s >= 0 && s < 1 ? s : 0, log: p.get("log") === "1", time: p.get("x") === "time" };
}
