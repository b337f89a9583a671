// One result per image: the picture, the top-k as bars, and for each class a button that lays its occlusion
// heatmap over the picture (what the model saw: the centre crop).

import { explain, inWords, predict } from "./api.js";
import { el, percent } from "./dom.js";

// Explanations run one at a time from this page: each is a few seconds of the service's CPU.
let queue = Promise.resolve();
function oneAtATime(task) {
  const run = queue.then(task, task);
  queue = run.catch(() => {});
  return run;
}

function drawOverlay(canvas, dataUrl) {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => {
      canvas.width = picture.naturalWidth;
      canvas.height = picture.naturalHeight;
      canvas.getContext("2d").drawImage(picture, 0, 0);
      resolve();
    };
    picture.onerror = () => reject(new Error("the heatmap image could not be read"));
    picture.src = dataUrl;
  });
}

export class ResultView {
  /** ``model`` is ``{name, version}``: the one this image is sent to (it stays with the result). */
  constructor(template, file, model, announce) {
    this.file = file;
    this.model = model;
    this.announce = announce;
    this.node = template.content.firstElementChild.cloneNode(true);
    this.photo = this.node.querySelector(".photo");
    this.heat = this.node.querySelector(".heat");
    this.caption = this.node.querySelector(".caption");
    this.bars = this.node.querySelector(".bars");
    this.error = this.node.querySelector(".error");
    this.badge = this.node.querySelector(".badge");
    this.set = this.node.querySelector(".set");
    this.name = file.name || "pasted image";
    this.node.querySelector(".name").textContent = this.name;
    this.node.querySelector(".meta").textContent = `${model.name}, version ${model.version}`;
    this.photo.alt = `${this.name}, as uploaded`;
    this.url = URL.createObjectURL(file);
    // A file the browser cannot show either (a PDF, a text file): no broken-image icon, the error says it all.
    this.photo.addEventListener("error", () => {
      this.node.querySelector(".frame").hidden = true;
    });
    // A picture smaller than its box (a 28 px digit) is scaled up with crisp pixels, not left a speck.
    this.photo.addEventListener("load", () => this.fitSmall());
    this.photo.src = this.url;
    this.caption.textContent = "As uploaded";
    this.pressed = null;
    this.overlays = new Map(); // class index -> explanation
  }

  fitSmall() {
    const box = this.node.querySelector(".frame").clientWidth || 352;
    const { naturalWidth: width, naturalHeight: height } = this.photo;
    this.photo.classList.toggle("small", width > 0 && width < box && height < box);
  }

  async classify(topK, coverage = null) {
    this.node.setAttribute("aria-busy", "true");
    this.caption.textContent = "Classifying…";
    try {
      const answer = await predict(this.model.name, this.model.version, this.file, topK, coverage);
      this.model = answer.model;
      const result = answer.results[0];
      this.showPredictions(result.predictions);
      this.showTrust(result);
    } catch (error) {
      this.showError(error);
    } finally {
      this.node.removeAttribute("aria-busy");
    }
  }

  showPredictions(predictions) {
    this.caption.textContent = "As uploaded";
    for (const prediction of predictions) this.bars.append(this.bar(prediction));
    const summary = predictions.slice(0, 3).map((p) => `${p.label} ${percent(p.score)}`).join(", ");
    this.announce(`${this.name}: ${summary}`);
  }

  /** The OOD badge (only when the image is flagged) and the prediction set (only when a coverage was chosen). */
  showTrust(result) {
    if (result.out_of_distribution) {
      this.badge.hidden = false;
      this.badge.textContent = "Unlike the training images";
      this.badge.title =
        `Out-of-distribution score ${result.ood_score.toFixed(1)}, above the model's threshold: ` +
        "the answer may mean little for this image.";
      this.announce(`${this.name}: this image looks unlike the images the model was trained on`);
    }
    const chosen = result.prediction_set;
    if (chosen) {
      this.set.hidden = false;
      const labels = chosen.labels.length > 1 ? chosen.labels.slice(0, -1).join(", ") + " or " + chosen.labels.at(-1) : chosen.labels[0];
      this.set.textContent = `Could be: ${labels} (${percent(chosen.coverage, 0)} prediction set)`;
    }
  }

  bar(prediction) {
    const button = el("button", { type: "button", class: "heat-toggle", "aria-pressed": "false" }, "Heatmap");
    button.setAttribute("aria-label", `Show where the model saw ${prediction.label}`);
    button.addEventListener("click", () => this.toggle(prediction, button));
    const meter = el("span", { class: "meter", "aria-hidden": "true" }, el("span", { style: `width: ${percent(prediction.score, 2)}` }));
    return el(
      "li",
      { class: "bar", "data-index": prediction.index },
      el("span", { class: "label" }, prediction.label),
      meter,
      el("span", { class: "score" }, percent(prediction.score)),
      button,
    );
  }

  showError(error) {
    this.caption.textContent = "Not classified";
    this.error.hidden = false;
    this.error.textContent = inWords(error);
    this.node.classList.add("failed");
    this.announce(`${this.name}: ${inWords(error)}`);
  }

  async toggle(prediction, button) {
    if (this.pressed === button) {
      this.showPhoto();
      return;
    }
    if (this.pressed) this.pressed.setAttribute("aria-pressed", "false");
    this.pressed = button;
    button.setAttribute("aria-pressed", "true");
    try {
      let answer = this.overlays.get(prediction.index);
      if (!answer) {
        button.setAttribute("aria-busy", "true");
        button.textContent = "Working…";
        this.announce(`Explaining ${prediction.label} in ${this.name}: a few seconds`);
        answer = await oneAtATime(() => explain(this.model.name, this.model.version, this.file, prediction.index));
        this.overlays.set(prediction.index, answer);
      }
      if (this.pressed !== button) return; // another class was chosen meanwhile
      await drawOverlay(this.heat, answer.overlay);
      this.showHeat(answer);
    } catch (error) {
      this.showPhoto();
      this.error.hidden = false;
      this.error.textContent = inWords(error);
      this.announce(`${this.name}: ${inWords(error)}`);
    } finally {
      button.removeAttribute("aria-busy");
      button.textContent = "Heatmap";
    }
  }

  showHeat(answer) {
    const { grid, target } = answer;
    const peak = Math.max(...answer.drops.flat());
    this.photo.hidden = true;
    this.heat.hidden = false;
    this.heat.setAttribute("role", "img");
    this.heat.setAttribute("aria-label", `Heatmap of ${target.label} over the ${grid.crop_size} pixel crop the model saw`);
    this.caption.textContent =
      `What the model saw (centre ${grid.crop_size}×${grid.crop_size} crop). Warm colours: hiding that part lowered ` +
      `“${target.label}” the most (by up to ${(Math.max(peak, 0) * 100).toFixed(1)} points, from ${percent(target.score)}); ` +
      `${grid.rows}×${grid.cols} positions of a ${grid.patch} px grey square.`;
    this.error.hidden = true;
    this.announce(`Heatmap of ${target.label} shown for ${this.name}`);
  }

  showPhoto() {
    if (this.pressed) this.pressed.setAttribute("aria-pressed", "false");
    this.pressed = null;
    this.heat.hidden = true;
    this.photo.hidden = false;
    this.caption.textContent = "As uploaded";
  }
}
