// The page: choose a model and version, give it images (drop, paste, pick), read the answers and the model card.

import { inWords, listModels, readModel } from "./api.js";
import { renderCard } from "./card.js";
import { el } from "./dom.js";
import { ResultView } from "./results.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"),
  version: $("version"),
  topK: $("top-k"),
  coverage: $("coverage"),
  summary: $("model-summary"),
  pageError: $("page-error"),
  dropzone: $("dropzone"),
  file: $("file"),
  status: $("status"),
  results: $("results"),
  card: $("card"),
  cardBody: $("card-body"),
  template: $("result-template"),
};
let models = [];

function announce(text) {
  ui.status.textContent = text;
}

function showPageError(error) {
  ui.pageError.hidden = !error;
  ui.pageError.textContent = error ? inWords(error) : "";
}

function chosen() {
  return { name: ui.model.value, version: Number(ui.version.value) || null };
}

function fillVersions() {
  const model = models.find((m) => m.name === ui.model.value);
  const versions = model ? [...model.loaded_versions].sort((a, b) => b - a) : [];
  ui.version.replaceChildren(...versions.map((v) => el("option", { value: v }, v === model.version ? `${v} (served by default)` : String(v))));
  ui.version.disabled = versions.length < 2;
}

/** Prediction sets only for a model with conformal data, and only at the levels it serves. */
function offerCoverage(detail) {
  const conformal = detail.trust && detail.trust.conformal;
  const highest = conformal ? conformal.images / (conformal.images + 1) : 0;
  for (const option of ui.coverage.options) option.disabled = option.value !== "" && Number(option.value) > highest;
  if (ui.coverage.selectedOptions[0]?.disabled) ui.coverage.value = "";
  ui.coverage.disabled = !conformal;
  ui.coverage.title = conformal ? "" : "This model has no conformal calibration data: retrain it with imgclf to get prediction sets.";
}

async function showModel() {
  const { name, version } = chosen();
  if (!name) return;
  try {
    const detail = await readModel(name, version);
    ui.summary.textContent = `${detail.name} version ${detail.version}: ${detail.architecture.name}, ${detail.num_classes} classes, ${detail.backend} ${detail.precision} on ${detail.device}.`;
    renderCard(ui.cardBody, detail);
    offerCoverage(detail);
    showPageError(null);
  } catch (error) {
    showPageError(error);
  }
}

async function loadModels() {
  try {
    const listing = await listModels();
    models = listing.models;
    if (!models.length) {
      ui.model.replaceChildren(el("option", {}, "no model loaded"));
      ui.summary.textContent = "No model is loaded yet: put a bundle in the models folder and reload this page.";
      return;
    }
    ui.model.replaceChildren(...models.map((m) => el("option", { value: m.name }, m.default ? `${m.name} (default)` : m.name)));
    ui.model.value = listing.default || models[0].name;
    ui.model.disabled = false;
    fillVersions();
    await showModel();
  } catch (error) {
    showPageError(error);
  }
}

function classify(files) {
  const images = [...files];
  if (!images.length) return;
  if (!ui.model.value || !models.length) {
    showPageError(new Error("no model is loaded, so there is nothing to classify with yet"));
    return;
  }
  const model = chosen();
  const topK = Number(ui.topK.value);
  const coverage = ui.coverage.value ? Number(ui.coverage.value) : null;
  announce(`Classifying ${images.length} image${images.length > 1 ? "s" : ""}…`);
  for (const file of images) {
    const view = new ResultView(ui.template, file, model, announce);
    ui.results.prepend(view.node);
    view.classify(topK, coverage);
  }
}

function imagesFromClipboard(event) {
  const items = [...(event.clipboardData?.items || [])];
  return items.filter((item) => item.kind === "file").map((item) => item.getAsFile()).filter(Boolean);
}

ui.model.addEventListener("change", () => {
  fillVersions();
  showModel();
});
ui.version.addEventListener("change", showModel);
ui.file.addEventListener("change", () => {
  classify(ui.file.files);
  ui.file.value = ""; // choosing the same file again classifies it again
});
for (const name of ["dragenter", "dragover"]) {
  ui.dropzone.addEventListener(name, (event) => {
    event.preventDefault();
    ui.dropzone.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  ui.dropzone.addEventListener(name, () => ui.dropzone.classList.remove("over"));
}
ui.dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  classify(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  const files = imagesFromClipboard(event);
  if (files.length) {
    event.preventDefault();
    classify(files);
  }
});

loadModels();
