// The model card: everything the bundle says about the model (GET /v1/models/{name}), in sections.

import { confusionMatrix, lineChart, reliabilityDiagram } from "./charts.js";
import { definitions, el, percent, table } from "./dom.js";

const MAX_ROWS_SHOWN = 100; // the per-class table of a 1000-class model is a scroll box, not a page

function section(title, ...content) {
  return el("section", { class: "card-section" }, el("h3", {}, title), ...content);
}

function architecture(detail) {
  const a = detail.architecture;
  const kwargs = Object.keys(a.kwargs || {}).length ? JSON.stringify(a.kwargs) : null;
  return section(
    "Architecture",
    definitions([
      ["Network", `${a.name} (${a.family})`],
      ["Arguments", kwargs],
      ["Dropout before the classifier", a.dropout ? String(a.dropout) : null],
      ["Classes", `${detail.num_classes} classes`],
      ["Embedding", `${detail.embedding_size} numbers per image`],
      ["Served by", `${detail.backend} on ${detail.device}, loaded ${detail.loaded_at}`],
      ["Precision", detail.precision_reason || detail.precision],
    ]),
  );
}

function labels(detail) {
  const list = el("ol", { class: "labels", start: "0" }, detail.labels.map((label) => el("li", {}, label)));
  return section(
    "Classes and labels",
    el("details", {}, el("summary", {}, `All ${detail.labels.length} labels, by index`), list),
  );
}

function preprocessing(detail) {
  const p = detail.preprocessing;
  return section(
    "Preprocessing",
    definitions([
      ["Resize", `short side to ${p.resize_size} px (${p.interpolation})`],
      ["Crop", `centre ${p.crop_size}×${p.crop_size} px`],
      ["Normalise", `mean ${p.mean.join(", ")}; std ${p.std.join(", ")} (${p.channel_order}, ${p.layout})`],
    ]),
  );
}

function provenance(detail) {
  const p = detail.provenance;
  const libraries = Object.entries(p.library_versions || {}).map(([name, version]) => `${name} ${version}`).join(", ");
  const files = Object.entries(detail.files).map(([name, hash]) => [name, el("code", { class: "hash" }, hash)]);
  return section(
    "Provenance and hashes",
    definitions([
      ["Starting weights", p.base_weights || "random initialisation"],
      ["Data set fingerprint", p.dataset_fingerprint],
      ["Created", p.created_at],
      ["Libraries", libraries],
    ]),
    table("SHA-256 of each file, checked when the service loaded it", ["file", "sha256"], files),
  );
}

function scores(metrics) {
  return definitions([
    ["Images", String(metrics.samples)],
    ["Accuracy", percent(metrics.accuracy)],
    ["Top-5 accuracy", metrics.top5_accuracy !== undefined ? percent(metrics.top5_accuracy) : null],
    ["Loss", metrics.loss !== undefined ? metrics.loss.toFixed(4) : null],
    ["Macro F1", metrics.macro_f1 !== undefined ? metrics.macro_f1.toFixed(3) : null],
  ]);
}

function perClass(metrics) {
  const rows = Object.entries(metrics.per_class || {});
  if (!rows.length) return null;
  const cells = rows
    .slice(0, MAX_ROWS_SHOWN)
    .map(([name, s]) => [name, s.precision.toFixed(3), s.recall.toFixed(3), s.f1.toFixed(3), String(s.support)]);
  const caption = rows.length > MAX_ROWS_SHOWN ? `Per-class scores, validation (first ${MAX_ROWS_SHOWN} of ${rows.length})` : "Per-class scores, validation";
  return el("div", { class: "scroll" }, table(caption, ["class", "precision", "recall", "F1", "images"], cells, [1, 2, 3, 4]));
}

function curves(history, bestEpoch) {
  const rows = (history || []).filter((row) => Number.isFinite(row.epoch));
  if (!rows.length) return null;
  const series = (key) => [
    { name: "training", points: rows.map((r) => [r.epoch, r[`train_${key}`]]) },
    { name: "validation", points: rows.map((r) => [r.epoch, r[`val_${key}`]]) },
  ];
  const last = rows[rows.length - 1];
  return el(
    "div",
    { class: "charts" },
    lineChart({
      title: "Loss per epoch",
      description: `Training loss ${last.train_loss.toFixed(3)} and validation loss ${last.val_loss.toFixed(3)} after epoch ${last.epoch}; best epoch ${bestEpoch}.`,
      series: series("loss"),
      xLabel: "epoch",
      yLabel: "loss",
      marker: bestEpoch ?? null,
    }),
    lineChart({
      title: "Accuracy per epoch",
      description: `Training accuracy ${percent(last.train_accuracy)} and validation accuracy ${percent(last.val_accuracy)} after epoch ${last.epoch}.`,
      series: series("accuracy"),
      xLabel: "epoch",
      yLabel: "accuracy",
      marker: bestEpoch ?? null,
      yRange: [0, 1],
    }),
  );
}

function metricsSection(detail) {
  const m = detail.metrics || {};
  if (!m.val) {
    return section(
      "Validation metrics",
      el("p", { class: "note" }, "This bundle carries no validation metrics: it was exported from pretrained weights, not trained by imgclf."),
    );
  }
  const parts = [el("h4", {}, "Validation"), scores(m.val)];
  if (m.test) parts.push(el("h4", {}, "Test"), scores(m.test));
  const trained = [m.epochs_trained && `${m.epochs_trained} epochs`, m.best_epoch && `best epoch ${m.best_epoch} (its weights are the ones served)`].filter(Boolean);
  if (trained.length) parts.push(el("p", {}, `Trained for ${trained.join("; ")}.`));
  const chart = curves(m.history, m.best_epoch);
  if (chart) parts.push(el("h4", {}, "Training and validation curves"), chart);
  parts.push(perClass(m.val));
  if (m.val.confusion_matrix) {
    parts.push(
      el("h4", {}, "Confusion matrix (validation)"),
      el("p", { class: "note" }, "Rows: the true class; columns: what the model said. Darker: a larger share of the true class."),
      el("div", { class: "scroll-x" }, confusionMatrix(m.val.confusion_matrix, detail.labels)),
    );
  }
  return section("Validation metrics", ...parts);
}

function calibration(detail) {
  const c = detail.trust && detail.trust.calibration;
  if (!c) {
    return section(
      "Calibration",
      el(
        "p",
        { class: "note not-calibrated" },
        "Not calibrated: this bundle has no validation data to calibrate on (pretrained weights, or an older export), so its scores are the plain softmax and may be over-confident.",
      ),
    );
  }
  const bins = c.reliability_after;
  return section(
    "Calibration",
    definitions([
      ["Temperature", c.temperature.toFixed(3)],
      ["Expected calibration error", `${c.ece_before.toFixed(3)} before, ${c.ece_after.toFixed(3)} after (15 bins, ${c.images} validation images)`],
      ["Negative log-likelihood", `${c.nll_before.toFixed(3)} before, ${c.nll_after.toFixed(3)} after`],
    ]),
    reliabilityDiagram({
      title: "Reliability diagram (validation, calibrated)",
      description: `Accuracy against confidence in ${bins.counts.length} bins; the diagonal is perfect calibration. ECE ${c.ece_after.toFixed(3)}.`,
      bins,
    }),
  );
}

function hyperparameters(detail) {
  if (!Object.keys(detail.hyperparameters || {}).length) return null;
  return section(
    "Training configuration",
    el("details", {}, el("summary", {}, "All hyperparameters"), el("pre", {}, JSON.stringify(detail.hyperparameters, null, 2))),
  );
}

/** Fill ``container`` with the card of ``detail`` (the JSON of GET /v1/models/{name}). */
export function renderCard(container, detail) {
  container.replaceChildren(
    el("p", { class: "card-title" }, el("strong", {}, detail.name), ` version ${detail.version}: ${detail.description || "no description"}`),
    architecture(detail),
    labels(detail),
    preprocessing(detail),
    metricsSection(detail),
    calibration(detail),
    provenance(detail),
    hyperparameters(detail),
  );
}
