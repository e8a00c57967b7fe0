// The browser half of the "touch first" stages (forward, posterior, the training tab's points flow).
//
// Once per (image, schedule), the server sends what `ddpm` computed: x_0, the fixed noise eps and the
// schedule's tables (lessons/stage.py). Moving t then stays here: this file only *combines* those numbers,
// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with both coefficients read from ddpm's tables (Eq. 4), and
// mu-tilde = coef1_t x_0 + coef2_t x_t (Eq. 7). It derives no coefficient of its own; the browser tests hold
// the pictures against ddpm.q_sample and ddpm.q_posterior.
(function () {
  "use strict";
  const D = (window.ddpm = window.ddpm || {});

  // ---- numbers ------------------------------------------------------------------------------------------
  function decode(b64, Type) {                        // base64 of little-endian float32 / float64 -> typed array
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  function tables(p) {                                 // {name: base64 float64} -> {name: Float64Array}
    const out = {};
    for (const [k, v] of Object.entries(p)) out[k] = decode(v, Float64Array);
    return out;
  }
  function tensor(p) {                                 // {c, h, w, data: base64 float32 (C, H, W)}
    return { c: p.c, h: p.h, w: p.w, data: decode(p.data, Float32Array) };
  }
  // lessons.common.fmt: 5 decimals, scientific (4 digits, two-digit exponent) when tiny
  function fmt(v) {
    if (v === 0 || Math.abs(v) >= 1e-3) return v.toFixed(5);
    return v.toExponential(4).replace(/e([+-])(\d)$/, "e$10$2");
  }
  D.fmt = fmt;

  // ---- pictures -----------------------------------------------------------------------------------------
  // values (C*H*W, in [-1, 1]) -> the canvas, one canvas pixel per image pixel (CSS scales it up, pixelated),
  // with lessons.common.to_picture's mapping: round((clamp(x, -1, 1) + 1) * 127.5)
  function paint(canvas, img, values) {
    const { c, h, w } = img;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(w, h);
    const n = h * w;
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 3; k++) {
        const v = values[(c === 1 ? 0 : k) * n + i];
        out.data[4 * i + k] = Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5);
      }
      out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }

  // ---- charts (plain canvas: a Plotly redraw per tick blocks the page for ~100 ms) ----------------------
  // Element sizes, kept by a ResizeObserver so that drawing never forces a layout (reading clientWidth or
  // offsetParent after the page changed costs a layout per picture). A size of zero means the element's tab is
  // hidden; `whenShown` runs a callback once it gets a size again (the tab was opened).
  const sizes = new WeakMap(), callbacks = new WeakMap();
  const observer = new ResizeObserver((entries) => {
    for (const e of entries) {
      const was = sizes.get(e.target), r = e.contentRect;
      sizes.set(e.target, { w: r.width, h: r.height });
      if (r.width > 0 && !(was && was.w > 0) && callbacks.has(e.target)) callbacks.get(e.target)();
    }
  });
  function shownSize(el, whenShown) {                 // the element's {w, h}, or null while its tab is hidden
    if (!callbacks.has(el)) {
      callbacks.set(el, whenShown); observer.observe(el);
      sizes.set(el, { w: el.clientWidth, h: el.clientHeight });   // once, until the observer reports
    }
    const sz = sizes.get(el);
    return sz && sz.w > 0 ? sz : null;
  }
  function sized(canvas) {                             // match the canvas to its CSS box, sharp on HiDPI screens
    const r = window.devicePixelRatio || 1;
    const box = sizes.get(canvas) || { w: canvas.clientWidth, h: canvas.clientHeight };
    if (!sizes.has(canvas)) { sizes.set(canvas, box); observer.observe(canvas); }
    const w = Math.max(200, box.w), h = Math.max(120, box.h);
    if (canvas.width !== Math.round(w * r)) { canvas.width = Math.round(w * r); canvas.height = Math.round(h * r); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    return { ctx, w, h };
  }
  function tick(v) {                                   // a short axis label
    const a = Math.abs(v);
    return a !== 0 && (a < 0.01 || a >= 1e4) ? v.toExponential(0) : String(+v.toPrecision(2));
  }
  const COLORS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a"];
  const FONT = "12px system-ui, 'WenQuanYi Micro Hei', sans-serif";

  // panels: [{title, series: [{name, y: Float64Array, color}], log?: bool}], x from 0..T-1, a marker at t
  function drawPanels(canvas, panels, T, t, xlabel) {
    const { ctx, w, h } = sized(canvas);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const left = 44, right = 10, top = 4, gap = 22, bottom = 30;
    const ph = (h - top - bottom - gap * panels.length) / panels.length;
    const X = (i) => left + (i / Math.max(1, T - 1)) * (w - left - right);
    panels.forEach((panel, k) => {
      const y0 = top + k * (ph + gap) + gap;
      let lo = Infinity, hi = -Infinity;
      for (const s of panel.series) for (const v of s.y) { if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      if (hi - lo < 1e-12) { hi += 1; lo -= 1; }
      const Y = (v) => y0 + ph - ((v - lo) / (hi - lo)) * ph;
      ctx.fillStyle = "#444"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
      ctx.fillText(panel.title, left, y0 - 4);
      ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1; ctx.strokeRect(left, y0, w - left - right, ph);
      ctx.fillStyle = "#666"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(tick(hi), left - 4, y0 + 6); ctx.fillText(tick(lo), left - 4, y0 + ph - 6);
      const step = Math.max(1, Math.floor(T / 600));
      for (const s of panel.series) {
        ctx.strokeStyle = s.color; ctx.lineWidth = 1.6; ctx.beginPath();
        for (let i = 0; i < T; i += step) { const v = s.y[i]; if (!isFinite(v)) continue; i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v)); }
        ctx.lineTo(X(T - 1), Y(s.y[T - 1])); ctx.stroke();
      }
      ctx.strokeStyle = "#888"; ctx.setLineDash([3, 3]); ctx.beginPath();
      ctx.moveTo(X(t), y0); ctx.lineTo(X(t), y0 + ph); ctx.stroke(); ctx.setLineDash([]);
      for (const s of panel.series) {
        if (!isFinite(s.y[t])) continue;
        ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(X(t), Y(s.y[t]), 4, 0, 2 * Math.PI); ctx.fill();
      }
      // legend, right-aligned in the panel's title line
      ctx.textAlign = "right"; ctx.textBaseline = "bottom";
      let x = w - right;
      for (const s of panel.series.slice().reverse()) {
        ctx.fillStyle = s.color; ctx.fillText(s.name, x, y0 - 4);
        x -= ctx.measureText(s.name).width + 14;
      }
    });
    ctx.fillStyle = "#444"; ctx.textAlign = "center"; ctx.textBaseline = "alphabetic";
    ctx.fillText(`${xlabel}   0 … ${T - 1}   (t = ${t})`, left + (w - left - right) / 2, h - 8);
  }

  // density histogram of `values` on [-4, 4] (60 bins, as numpy's density=True) against N(0, 1)
  function drawHistogram(canvas, values, labels) {
    const { ctx, w, h } = sized(canvas);
    const bins = 60, lo = -4, hi = 4, width = (hi - lo) / bins, counts = new Float64Array(bins);
    let inside = 0;
    for (const v of values) {
      if (v < lo || v > hi) continue;
      counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1; inside += 1;
    }
    const density = Array.from(counts, (c) => (inside ? c / (inside * width) : 0));
    const top_d = 1.08 * Math.max(0.45, ...density);                       // N(0, 1) peaks at 0.399
    const left = 36, right = 8, top = 22, bottom = 26, H = h - top - bottom;
    const X = (v) => left + ((v - lo) / (hi - lo)) * (w - left - right);
    const Y = (d) => top + H - (d / top_d) * H;
    ctx.clearRect(0, 0, w, h); ctx.font = FONT;
    ctx.fillStyle = "#6c8ebf";
    density.forEach((d, b) => ctx.fillRect(X(lo + b * width), Y(d), X(lo + (b + 1) * width) - X(lo + b * width) - 0.5, Y(0) - Y(d)));
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.beginPath();
    for (let i = 0; i <= 160; i++) { const v = lo + i * (hi - lo) / 160; const d = Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI); i ? ctx.lineTo(X(v), Y(d)) : ctx.moveTo(X(v), Y(d)); }
    ctx.stroke();
    ctx.strokeStyle = "#ccc"; ctx.strokeRect(left, top, w - left - right, H);
    ctx.fillStyle = "#444"; ctx.textAlign = "center"; ctx.textBaseline = "alphabetic";
    for (const v of [-4, -2, 0, 2, 4]) ctx.fillText(String(v), X(v), h - 12);
    ctx.fillText(labels.pixel_value, left + (w - left - right) / 2, h - 1);
    ctx.textAlign = "left"; ctx.fillStyle = "#6c8ebf"; ctx.fillText("■ " + labels.pixels, left + 4, 15);
    ctx.textAlign = "right"; ctx.fillStyle = "#000"; ctx.fillText("— N(0, 1)", w - right, 15);
  }

  // ---- wiring ---------------------------------------------------------------------------------------------
  // a drag or an arrow key on the slider with id `sliderId` draws at once, without asking the server
  function follow(sliderId, show) {
    document.addEventListener("input", (e) => {
      if (e.target && e.target.closest && e.target.closest("#" + sliderId)) {
        const v = Number(e.target.value);
        if (Number.isFinite(v)) show(v);
      }
    }, true);
  }
  // At most one picture per animation frame, for the latest value asked for. `draw(v, again)` returns false when
  // its tab is not rendered yet (it is then tried again every 200 ms) and "hidden" when the tab is rendered but
  // hidden (`again` redraws once the tab is opened).
  function scheduler(sliderId, draw) {
    let raf = 0, wait = 0, want = 0;
    const again = () => show(want);
    function run() {
      raf = 0;
      if (draw(want, again) === false && !wait) wait = setTimeout(() => { wait = 0; show(want); }, 200);
    }
    function show(v) { want = Number(v); if (!raf) raf = requestAnimationFrame(run); }
    follow(sliderId, show);
    return show;
  }
  function byId(id) { return document.getElementById(id); }
  function setText(id, s) { const el = byId(id); if (el && el.textContent !== s) el.textContent = s; }

  // ---- tab 1 · forward: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps --------------------------------------
  D.forward = (function () {
    let st = null, shown = -1;
    function load(p) {
      if (!p || !p.x0) return;
      st = { x0: tensor(p.x0), eps: tensor(p.eps), tab: tables(p.tables), T: p.T, labels: p.labels, holder: null };
      st.xt = new Float32Array(st.x0.data.length);
      shown = -1;
      show(p.t);
    }
    function mount(holder) {                            // the parts that do not move with t (again after a re-render)
      const L = st.labels;
      setText("forward-cap-xt", L.xt); setText("forward-cap-x0", L.x0); setText("forward-cap-eps", L.eps);
      setText("forward-eq-cite", L.cite);
      paint(byId("forward-x0-canvas"), st.x0, st.x0.data);
      paint(byId("forward-eps-canvas"), st.eps, st.eps.data.map((v) => v / 3));   // eps / 3: the noise in [-1, 1]
      st.holder = holder;
    }
    function draw(want, again) {
      if (!st) return true;
      const t = Math.min(st.T - 1, Math.max(0, Math.round(want)));
      if (t === shown && st.holder && st.holder.isConnected) return;
      const holder = byId("forward-xt");
      if (!holder) return false;                                              // its tab is not rendered yet
      if (!shownSize(holder, again)) return "hidden";
      if (holder !== st.holder) mount(holder);
      const a = st.tab.sqrt_alphas_cumprod[t], b = st.tab.sqrt_one_minus_alphas_cumprod[t];
      const x0 = st.x0.data, eps = st.eps.data, xt = st.xt;
      for (let i = 0; i < xt.length; i++) xt[i] = a * x0[i] + b * eps[i];     // Eq. 4
      paint(holder.querySelector("canvas"), st.x0, xt);
      holder.dataset.t = String(t);
      const L = st.labels;
      setText("forward-eq-t", String(t)); setText("forward-eq-a", fmt(a)); setText("forward-eq-b", fmt(b));
      setText("forward-eq-beta", fmt(st.tab.betas[t])); setText("forward-eq-abar", fmt(st.tab.alphas_cumprod[t]));
      setText("forward-eq-snr", fmt(st.tab.snr[t]));
      drawPanels(byId("forward-curves"), [
        { title: "β_t", series: [{ name: "β_t", y: st.tab.betas, color: COLORS[0] }] },
        { title: "", series: [{ name: "ᾱ_t", y: st.tab.alphas_cumprod, color: COLORS[1] },
                              { name: L.signal, y: st.tab.sqrt_alphas_cumprod, color: COLORS[2] },
                              { name: L.noise, y: st.tab.sqrt_one_minus_alphas_cumprod, color: COLORS[3] }] },
        { title: "", series: [{ name: "log SNR_t", y: st.tab.log_snr, color: COLORS[4] }] },
      ], st.T, t, L.timestep);
      drawHistogram(byId("forward-hist"), xt, { pixel_value: L.pixel_value, pixels: L.pixels.replace("{t}", t) });
      shown = t;
      holder.dispatchEvent(new CustomEvent("ddpm:shown", { detail: t }));
    }
    const show = scheduler("forward-t", draw);
    return { load, show, get t() { return shown; } };
  })();

  // ---- tab 2 · posterior: mu-tilde = coef1_t x_0 + coef2_t x_t, a draw mu-tilde + sqrt(beta-tilde_t) z -------
  D.posterior = (function () {
    let st = null, shown = -1;
    function load(p) {
      if (!p || !p.x0) return;
      st = { x0: tensor(p.x0), eps: tensor(p.eps), z: tensor(p.z), tab: tables(p.tables), T: p.T, labels: p.labels,
             holder: null };
      const n = st.x0.data.length;
      st.xt = new Float32Array(n); st.mu = new Float32Array(n); st.draw = new Float32Array(n);
      shown = -1;
      show(p.t);
    }
    function mount(holder) {
      const L = st.labels;
      setText("posterior-cap-xt", L.xt); setText("posterior-cap-mu", L.post_mean);
      setText("posterior-cap-draw", L.post_draw); setText("posterior-cap-x0", L.x0); setText("posterior-eq-cite", L.cite);
      paint(byId("posterior-x0-canvas"), st.x0, st.x0.data);
      st.holder = holder;
    }
    function draw(want, again) {
      if (!st) return true;
      const t = Math.min(st.T - 1, Math.max(0, Math.round(want)));
      if (t === shown && st.holder && st.holder.isConnected) return;
      const holder = byId("posterior-xt");
      if (!holder) return false;
      if (!shownSize(holder, again)) return "hidden";
      if (holder !== st.holder) mount(holder);
      const T = st.tab, a = T.sqrt_alphas_cumprod[t], b = T.sqrt_one_minus_alphas_cumprod[t];
      const c1 = T.posterior_mean_coef1[t], c2 = T.posterior_mean_coef2[t], sd = Math.sqrt(T.posterior_variance[t]);
      const x0 = st.x0.data, eps = st.eps.data, z = st.z.data;
      for (let i = 0; i < x0.length; i++) {
        const xt = a * x0[i] + b * eps[i];                                   // Eq. 4
        const mu = c1 * x0[i] + c2 * xt;                                     // Eq. 7
        st.xt[i] = xt; st.mu[i] = mu; st.draw[i] = mu + sd * z[i];
      }
      paint(holder.querySelector("canvas"), st.x0, st.xt);
      paint(byId("posterior-mu-canvas"), st.x0, st.mu);
      paint(byId("posterior-draw-canvas"), st.x0, st.draw);
      holder.dataset.t = String(t);
      const bt = T.posterior_variance[t], beta = T.betas[t];
      for (const el of document.querySelectorAll(".posterior-eq-t")) el.textContent = String(t);
      for (const el of document.querySelectorAll(".posterior-eq-p")) el.textContent = String(t - 1);
      setText("posterior-eq-c1", fmt(c1)); setText("posterior-eq-c2", fmt(c2));
      setText("posterior-eq-bt", fmt(bt)); setText("posterior-eq-beta", fmt(beta)); setText("posterior-eq-ratio", fmt(bt / beta));
      const L = st.labels;
      drawPanels(byId("posterior-var"), [
        { title: "", series: [{ name: L.beta_large, y: T.log10_betas, color: COLORS[0] },
                                            { name: L.beta_small, y: T.log10_posterior_variance, color: COLORS[1] }] },
      ], st.T, t, L.timestep);
      shown = t;
      holder.dispatchEvent(new CustomEvent("ddpm:shown", { detail: t }));
    }
    const show = scheduler("posterior-t", draw);
    return { load, show, get t() { return shown; } };
  })();

  // ---- tab 5 · latent: x_t and z_t by Eq. 4 from ddpm's tables; D(z_t) decoded by the server, flipped here ------
  D.latent = (function () {
    let st = null, shown = -1;
    const ONE = { c: 1, h: 7, w: 7 };
    function channels(holder, z, scale) {              // (4, 7, 7) -> four 7x7 canvases, z / 3 as grey like eps
      const cs = holder.querySelectorAll("canvas"), n = 49;
      for (let k = 0; k < cs.length; k++) paint(cs[k], ONE, z.subarray(k * n, (k + 1) * n).map((v) => v / scale));
    }
    function load(p) {
      if (!p || !p.z0) return;
      const bytes = atob(p.frames), frames = new Uint8Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) frames[i] = bytes.charCodeAt(i);
      st = { x0: tensor(p.x0), eps: tensor(p.eps), rec: tensor(p.rec), err: tensor(p.err), z0: tensor(p.z0),
             epsz: tensor(p.eps_z), frames, step: p.step, tab: tables(p.tables), T: p.T, labels: p.labels, holder: null };
      st.xt = new Float32Array(st.x0.data.length); st.zt = new Float32Array(st.z0.data.length);
      st.dzt = new Float32Array(st.x0.data.length);
      shown = -1;
      show(p.t);
    }
    function mount(holder) {
      const L = st.labels;
      for (const k of ["x0", "z0", "rec", "err", "xt", "zt", "dzt"]) setText("latent-cap-" + k, L[k]);
      setText("latent-eq-cite", L.cite);
      const nums = byId("latent-numbers");
      if (nums) nums.innerHTML = L.numbers;            // our own text (lessons/i18n.py), not a user's
      paint(byId("latent-x0-canvas"), st.x0, st.x0.data);
      paint(byId("latent-rec-canvas"), st.rec, st.rec.data);
      paint(byId("latent-err-canvas"), st.err, st.err.data);
      channels(byId("latent-z0"), st.z0.data, 3);
      st.holder = holder;
    }
    function draw(want, again) {
      if (!st) return true;
      const k = Math.min(Math.floor((st.T - 1) / st.step), Math.max(0, Math.round(want / st.step)));
      const t = k * st.step;                          // the decodings exist on the slider's grid only
      if (t === shown && st.holder && st.holder.isConnected) return;
      const holder = byId("latent-xt");
      if (!holder) return false;
      if (!shownSize(holder, again)) return "hidden";
      if (holder !== st.holder) mount(holder);
      const a = st.tab.sqrt_alphas_cumprod[t], b = st.tab.sqrt_one_minus_alphas_cumprod[t];
      for (let i = 0; i < st.xt.length; i++) st.xt[i] = a * st.x0.data[i] + b * st.eps.data[i];     // Eq. 4
      for (let i = 0; i < st.zt.length; i++) st.zt[i] = a * st.z0.data[i] + b * st.epsz.data[i];   // Eq. 4, latents
      const n = st.dzt.length, off = k * n;
      for (let i = 0; i < n; i++) st.dzt[i] = st.frames[off + i] / 127.5 - 1;
      paint(holder.querySelector("canvas"), st.x0, st.xt);
      channels(byId("latent-zt"), st.zt, 3);
      paint(byId("latent-dzt-canvas"), st.x0, st.dzt);
      holder.dataset.t = String(t);
      for (const el of document.querySelectorAll(".latent-eq-t")) el.textContent = String(t);
      setText("latent-eq-a", fmt(a)); setText("latent-eq-b", fmt(b));
      shown = t;
      holder.dispatchEvent(new CustomEvent("ddpm:shown", { detail: t }));
    }
    const show = scheduler("latent-t", draw);
    return { load, show, get t() { return shown; } };
  })();

  // ---- tab 4 · training: the points of a reverse run, step by step (the run itself was made by the server) --
  D.flow = (function () {
    let st = null, shown = -1;
    function load(p) {
      if (!p || !p.traj) return;
      st = { flat: decode(p.traj, Float32Array), steps: p.steps, n: p.n, hue: p.hue,  // traj: (steps + 1, n, 2)
             data: decode(p.data, Float32Array), title: p.labels.title, range: p.range, canvas: null };
      shown = -1;
      show(p.step == null ? st.steps : p.step);
    }
    function draw(want, again) {
      if (!st) return true;
      const k = Math.min(st.steps, Math.max(0, Math.round(want)));
      const canvas = byId("flow-canvas");
      if (!canvas) return false;
      if (!shownSize(canvas, again)) return "hidden";
      if (k === shown && canvas === st.canvas) return;
      st.canvas = canvas;
      const { ctx, w, h } = sized(canvas);
      const s = Math.min(w, h) / (2 * st.range), cx = w / 2, cy = h / 2;
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = "#d0d0d0";                                             // the real data
      for (let i = 0; i < st.data.length; i += 2) ctx.fillRect(cx + st.data[i] * s - 1, cy - st.data[i + 1] * s - 1, 2, 2);
      const base = k * st.n * 2;
      for (let i = 0; i < st.n; i++) {
        ctx.fillStyle = `hsl(${st.hue[i]}, 80%, 45%)`;                       // each point keeps its colour
        ctx.beginPath(); ctx.arc(cx + st.flat[base + 2 * i] * s, cy - st.flat[base + 2 * i + 1] * s, 2.4, 0, 2 * Math.PI);
        ctx.fill();
      }
      ctx.font = FONT; ctx.fillStyle = "#333"; ctx.textAlign = "left"; ctx.textBaseline = "top";
      const x = k === 0 ? "x_T ~ N(0, I)" : `x_${st.steps - k}`;
      ctx.fillText(st.title.replace("{k}", k).replace("{T}", st.steps).replace("{x}", x), 6, 6);
      canvas.dataset.step = String(k);
      shown = k;
    }
    const show = scheduler("flow-step", draw);
    return { load, show, get step() { return shown; } };
  })();

  // ---- tab 4 · paths: the learned score s_θ(x, t) = −ε_θ(x, t)/√(1−ᾱ_t) on a grid, at every t (from the server) --
  // The server sends, once per toy, the field at all T timesteps, its 90th percentile of |s| per t (the arrows' unit),
  // x_t = q_sample(x_0, t, ε) at every t, the data and the schedule's tables; moving t only picks a slice and draws it.
  D.score = (function () {
    let st = null, shown = -1, asked = null;
    function load(p) {
      if (!p || !p.field) return;
      st = { field: decode(p.field, Float32Array), grid: decode(p.grid, Float32Array),   // (T, G, 2) and (G, 2)
             scale: decode(p.scale, Float32Array), xt: decode(p.xt, Float32Array),      // (T,) and (T, n, 2)
             data: decode(p.data, Float32Array), tab: tables(p.tables), T: p.T, G: p.n_grid * p.n_grid, n: p.n,
             range: p.range, unit: p.unit, cap: p.cap, canvas: null };
      shown = -1;
      show(asked == null ? p.t : asked);                 // a new toy keeps the t the learner chose
    }
    function arrow(path, x0, y0, x1, y1) {               // a shaft and a small head, in canvas pixels
      const dx = x1 - x0, dy = y1 - y0, len = Math.hypot(dx, dy);
      if (len < 0.5) return;
      const hx = dx / len, hy = dy / len, hs = Math.min(5, 0.45 * len);
      path.moveTo(x0, y0); path.lineTo(x1, y1);
      path.lineTo(x1 - hs * (hx - 0.5 * hy), y1 - hs * (hy + 0.5 * hx));
      path.moveTo(x1, y1); path.lineTo(x1 - hs * (hx + 0.5 * hy), y1 - hs * (hy - 0.5 * hx));
    }
    function draw(want, again) {
      asked = want;
      if (!st) return true;
      const t = Math.min(st.T - 1, Math.max(0, Math.round(want)));
      const canvas = byId("score-canvas");
      if (!canvas) return false;
      if (!shownSize(canvas, again)) return "hidden";
      if (t === shown && canvas === st.canvas) return;
      st.canvas = canvas;
      const { ctx, w, h } = sized(canvas);
      const s = Math.min(w, h) / (2 * st.range), cx = w / 2, cy = h / 2;
      const X = (v) => cx + v * s, Y = (v) => cy - v * s;
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = "#d0d0d0";                                             // the real data x_0
      for (let i = 0; i < st.data.length; i += 2) ctx.fillRect(X(st.data[i]) - 1, Y(st.data[i + 1]) - 1, 2, 2);
      ctx.fillStyle = "rgba(31, 119, 180, 0.55)";                            // x_t, as the server computed it
      const xb = t * st.n * 2;
      for (let i = 0; i < st.n; i++) {
        ctx.beginPath(); ctx.arc(X(st.xt[xb + 2 * i]), Y(st.xt[xb + 2 * i + 1]), 2.2, 0, 2 * Math.PI); ctx.fill();
      }
      // each arrow: the direction of s, length unit * |s| / scale[t] in plane units, at most cap * unit
      const fb = t * st.G * 2, k = st.unit / st.scale[t], top = st.cap * st.unit;
      const normal = new Path2D(), capped = new Path2D();
      for (let i = 0; i < st.G; i++) {
        const sx = st.field[fb + 2 * i], sy = st.field[fb + 2 * i + 1], m = Math.hypot(sx, sy);
        if (!(m > 0)) continue;
        const len = Math.min(top, k * m), gx = st.grid[2 * i], gy = st.grid[2 * i + 1];
        arrow(k * m > top ? capped : normal, X(gx), Y(gy), X(gx + (sx / m) * len), Y(gy + (sy / m) * len));
      }
      ctx.lineWidth = 1.2; ctx.lineCap = "round";
      ctx.strokeStyle = "#1f4e9c"; ctx.stroke(normal);
      ctx.strokeStyle = "#e4572e"; ctx.stroke(capped);
      const lines = [`t = ${t}   ᾱ_t = ${fmt(st.tab.alphas_cumprod[t])}`,
                     `√(1−ᾱ_t) = ${fmt(st.tab.sqrt_one_minus_alphas_cumprod[t])}   |s|₉₀ = ${tick(st.scale[t])}`];
      ctx.font = FONT; ctx.textAlign = "left"; ctx.textBaseline = "top";
      const tw = Math.max(...lines.map((l) => ctx.measureText(l).width));
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; ctx.fillRect(2, 2, tw + 10, 36);
      ctx.fillStyle = "#333";
      lines.forEach((l, i) => ctx.fillText(l, 6, 5 + 16 * i));
      canvas.dataset.t = String(t);
      shown = t;
    }
    const show = scheduler("score-t", draw);
    return { load, show, get t() { return shown; } };
  })();
})();
