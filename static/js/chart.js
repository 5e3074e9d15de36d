/* Line charts as inline SVG, no library: the training run page draws its loss curve and eval
   metrics from the run's history (a list of {step, loss, learning_rate, eval_*...} points that
   the page embeds with json_script).

   Markup: <figure class="chart" data-chart="ID" data-series="loss,eval_loss" data-range="0,1">
   where ID is the json_script element's id and data-series names the point keys to plot
   ("eval_*" plots every numeric key that starts with "eval_" except eval_loss; a point may also
   carry its eval numbers nested as {"eval": {...}}). The figure's <svg> is replaced on each
   draw. htmx swaps the run status every 2 s while a run is live; we redraw after each swap. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 240, PAD = { left: 52, right: 12, top: 12, bottom: 30 };
  const COLORS = ["#2457c5", "#b42318", "#1a7f37", "#9a6700", "#7a3ec2", "#0e7c86", "#5d6b78"];

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Flatten {"eval": {"accuracy": .7}} into {"eval_accuracy": .7}: both shapes are accepted.
  function flat(point) {
    const out = {};
    for (const key in point) {
      const value = point[key];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        for (const sub in value) out[key + "_" + sub] = value[sub];
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  function seriesKeys(points, wanted) {
    const keys = [];
    wanted.forEach((want) => {
      if (want === "eval_*") {
        points.forEach((p) => {
          for (const key in p) {
            if (key.startsWith("eval_") && key !== "eval_loss" && typeof p[key] === "number" &&
                !/(runtime|per_second|steps|epoch)/.test(key) && !keys.includes(key)) {
              keys.push(key);
            }
          }
        });
      } else if (points.some((p) => typeof p[want] === "number") && !keys.includes(want)) {
        keys.push(want);
      }
    });
    return keys;
  }

  function niceTicks(lo, hi, count) {
    if (hi === lo) { hi = lo + 1; }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  function label(value) {
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.01 || abs >= 1e5)) return value.toExponential(1);
    return String(Math.round(value * 1000) / 1000);
  }

  function draw(figure) {
    const source = document.getElementById(figure.dataset.chart);
    if (!source) return;
    const points = (JSON.parse(source.textContent) || []).map(flat)
      .filter((p) => typeof p.step === "number");
    const keys = seriesKeys(points, (figure.dataset.series || "loss").split(","));
    const old = figure.querySelector("svg");
    if (old) old.remove();
    const legend = figure.querySelector(".legend");
    if (legend) legend.remove();
    const svg = el("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg",
      "aria-label": figure.dataset.label || keys.join(", "),
    });
    figure.prepend(svg);
    const lines = keys.map((key) => ({
      key, points: points.filter((p) => typeof p[key] === "number" && isFinite(p[key]))
        .map((p) => [p.step, p[key]]),
    })).filter((line) => line.points.length);
    if (!lines.length) {
      svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" },
        "No data yet"));
      return;
    }
    const all = lines.flatMap((line) => line.points);
    const total = Number(figure.dataset.total) || 0;
    const x0 = Math.min(...all.map((p) => p[0]), 0);
    const x1 = Math.max(...all.map((p) => p[0]), total, x0 + 1);
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (figure.dataset.range) {
      const [lo, hi] = figure.dataset.range.split(",").map(Number);
      [y0, y1] = [Math.min(lo, y0), Math.max(hi, y1)];
    } else {
      const margin = (y1 - y0) * 0.05 || Math.abs(y1) * 0.1 || 1;
      // Losses and rates are not negative: keep the axis from dipping below zero for them.
      [y0, y1] = [y0 >= 0 && y0 - margin < 0 ? 0 : y0 - margin, y1 + margin];
    }
    const sx = (x) => PAD.left + (x - x0) / (x1 - x0) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - (y - y0) / (y1 - y0) * (H - PAD.top - PAD.bottom);

    const axes = el("g", { class: "chart-axes" });
    niceTicks(y0, y1, 4).forEach((t) => {
      axes.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(t), y2: sy(t), class: "grid" }));
      axes.append(el("text", { x: PAD.left - 6, y: sy(t) + 4, "text-anchor": "end" }, label(t)));
    });
    niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t)).forEach((t) => {
      axes.append(el("text", { x: sx(t), y: H - PAD.bottom + 16, "text-anchor": "middle" }, label(t)));
    });
    axes.append(el("text", { x: W - PAD.right, y: H - 2, "text-anchor": "end" }, "step"));
    svg.append(axes);

    const list = document.createElement("ul");
    list.className = "legend";
    lines.forEach((line, i) => {
      const color = COLORS[i % COLORS.length];
      const d = line.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
      const path = el("polyline", { points: d, fill: "none", stroke: color, "stroke-width": 2 });
      path.append(el("title", {}, line.key));
      svg.append(path);
      if (line.points.length < 30) {
        line.points.forEach((p) => {
          const dot = el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color });
          dot.append(el("title", {}, `${line.key} ${label(p[1])} at step ${p[0]}`));
          svg.append(dot);
        });
      }
      const last = line.points[line.points.length - 1];
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color;  // CSSOM, not a style attribute: the CSP allows it
      item.append(swatch);
      item.append(`${line.key.replace(/^eval_/, "eval ")}: ${label(last[1])}`);
      list.append(item);
    });
    figure.append(list);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  // outerHTML swaps replace the figure: draw what is in the document now.
  document.addEventListener("htmx:afterSwap", () => drawAll(document));
  window.Prefhub = window.Prefhub || { kinds: {} };
  window.Prefhub.drawCharts = drawAll;
})();
