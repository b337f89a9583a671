// Inline SVG charts for the model card: training curves and the confusion matrix. No library: a few dozen lines.

import { svg } from "./dom.js";

const WIDTH = 360;
const HEIGHT = 220;
const MARGIN = { top: 28, right: 12, bottom: 38, left: 48 };
const COLOURS = ["#1f6fb4", "#d1495b", "#2a9d8f", "#8a5cbf"];

function niceTicks(low, high, count = 5) {
  if (low === high) return [low];
  const step0 = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= step0);
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) ticks.push(+value.toFixed(10));
  return ticks;
}

/**
 * A line chart of ``series`` (``[{name, points: [[x, y], ...]}]``) with axes, ticks and a legend; ``marker`` draws
 * a dotted vertical line at that x (the best epoch). Readable by screen readers through its title and description.
 */
export function lineChart({ title, description, series, xLabel, yLabel, marker = null, yRange = null }) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = yRange || [Math.min(0, ...ys), Math.max(...ys) * 1.05 || 1];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x) => MARGIN.left + (x1 === x0 ? plotW / 2 : ((x - x0) / (x1 - x0)) * plotW);
  const sy = (y) => MARGIN.top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": `${title}. ${description}` });
  chart.append(svg("title", {}, title));
  for (const tick of niceTicks(y0, y1)) {
    chart.append(
      svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: sy(tick), y2: sy(tick), class: "grid" }),
      svg("text", { x: MARGIN.left - 6, y: sy(tick) + 4, "text-anchor": "end", class: "tick" }, +tick.toFixed(3)),
    );
  }
  const xTicks = niceTicks(x0, x1, Math.min(8, Math.max(1, x1 - x0))).filter(Number.isInteger);
  for (const tick of xTicks) {
    chart.append(svg("text", { x: sx(tick), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle", class: "tick" }, tick));
  }
  chart.append(
    svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: sy(y0), y2: sy(y0), class: "axis" }),
    svg("line", { x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: sy(y0), class: "axis" }),
    svg("text", { x: MARGIN.left + plotW / 2, y: HEIGHT - 4, "text-anchor": "middle", class: "axis-label" }, xLabel),
    svg("text", { x: 12, y: MARGIN.top + plotH / 2, transform: `rotate(-90 12 ${MARGIN.top + plotH / 2})`, "text-anchor": "middle", class: "axis-label" }, yLabel),
  );
  if (marker !== null) {
    chart.append(svg("line", { x1: sx(marker), x2: sx(marker), y1: MARGIN.top, y2: sy(y0), class: "marker" }));
  }
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = s.points.filter((p) => Number.isFinite(p[1]));
    chart.append(
      svg("polyline", { points: points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2, class: "series" }),
      ...points.map(([x, y]) => svg("circle", { cx: sx(x), cy: sy(y), r: 3, fill: colour }, svg("title", {}, `${s.name}, epoch ${x}: ${+y.toFixed(4)}`))),
      svg("rect", { x: MARGIN.left + i * 100, y: 6, width: 10, height: 10, fill: colour }),
      svg("text", { x: MARGIN.left + 14 + i * 100, y: 15, class: "legend" }, s.name),
    );
  });
  return chart;
}

/**
 * The confusion matrix as a grid: rows are true classes, columns predictions, shade = share of the true class,
 * counts written in when the classes are few enough to read.
 */
export function confusionMatrix(matrix, labels) {
  const n = labels.length;
  const cell = n <= 12 ? 30 : n <= 30 ? 18 : Math.max(2, Math.floor(540 / n));
  const gutter = Math.min(110, 8 + 7 * Math.max(...labels.map((l) => String(l).length)));
  const size = gutter + n * cell + 4;
  const totals = matrix.map((row) => row.reduce((a, b) => a + b, 0) || 1);
  const correct = matrix.reduce((sum, row, i) => sum + row[i], 0);
  const all = matrix.flat().reduce((a, b) => a + b, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${size} ${size}`,
    class: "matrix",
    role: "img",
    "aria-label": `Confusion matrix of ${n} classes: rows are the true classes, columns the predictions; ${correct} of ${all} images on the diagonal (correct).`,
  });
  const showCounts = n <= 30;
  matrix.forEach((row, i) => {
    if (showCounts) chart.append(svg("text", { x: gutter - 4, y: gutter + i * cell + cell / 2 + 4, "text-anchor": "end", class: "tick" }, labels[i]));
    row.forEach((count, j) => {
      const share = count / totals[i];
      const x = gutter + j * cell;
      const y = gutter + i * cell;
      chart.append(
        svg(
          "rect",
          { x, y, width: cell, height: cell, class: i === j ? "cell diagonal" : "cell", "fill-opacity": (0.06 + 0.94 * share).toFixed(3) },
          svg("title", {}, `true ${labels[i]}, predicted ${labels[j]}: ${count} (${(share * 100).toFixed(1)}% of ${labels[i]})`),
        ),
      );
      if (showCounts && count) {
        chart.append(svg("text", { x: x + cell / 2, y: y + cell / 2 + 4, "text-anchor": "middle", class: share > 0.5 ? "count light" : "count" }, count));
      }
    });
    if (showCounts) {
      const x = gutter + i * cell + cell / 2;
      chart.append(svg("text", { x, y: gutter - 6, transform: `rotate(-60 ${x} ${gutter - 6})`, class: "tick" }, labels[i]));
    }
  });
  return chart;
}

/**
 * A reliability diagram: per confidence bin (``bins``: edges, counts, confidence, accuracy), a bar of the bin's
 * accuracy, against the diagonal where accuracy equals confidence. Empty bins are left out.
 */
export function reliabilityDiagram({ title, description, bins }) {
  const size = 220;
  const plot = size - MARGIN.left - MARGIN.right;
  const sx = (x) => MARGIN.left + x * plot;
  const sy = (y) => MARGIN.top + plot - y * plot;
  const height = MARGIN.top + plot + MARGIN.bottom;
  const chart = svg("svg", { viewBox: `0 0 ${size} ${height}`, class: "chart reliability", role: "img", "aria-label": `${title}. ${description}` });
  chart.append(svg("title", {}, title));
  for (const tick of [0, 0.5, 1]) {
    chart.append(
      svg("text", { x: MARGIN.left - 6, y: sy(tick) + 4, "text-anchor": "end", class: "tick" }, tick),
      svg("text", { x: sx(tick), y: sy(0) + 16, "text-anchor": "middle", class: "tick" }, tick),
    );
  }
  bins.counts.forEach((count, i) => {
    if (!count) return;
    const [low, high] = [bins.edges[i], bins.edges[i + 1]];
    const accuracy = bins.accuracy[i];
    chart.append(
      svg(
        "rect",
        { x: sx(low), y: sy(accuracy), width: sx(high) - sx(low), height: sy(0) - sy(accuracy), class: "bin" },
        svg("title", {}, `confidence ${low.toFixed(2)}–${high.toFixed(2)}: ${count} images, accuracy ${(accuracy * 100).toFixed(1)}%, mean confidence ${(bins.confidence[i] * 100).toFixed(1)}%`),
      ),
    );
  });
  chart.append(
    svg("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), class: "marker" }),
    svg("line", { x1: sx(0), x2: sx(1), y1: sy(0), y2: sy(0), class: "axis" }),
    svg("line", { x1: sx(0), x2: sx(0), y1: sy(1), y2: sy(0), class: "axis" }),
    svg("text", { x: MARGIN.left + plot / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, "confidence"),
    svg("text", { x: 12, y: MARGIN.top + plot / 2, transform: `rotate(-90 12 ${MARGIN.top + plot / 2})`, "text-anchor": "middle", class: "axis-label" }, "accuracy"),
  );
  return chart;
}
