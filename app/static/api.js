// Calls to the imgclf API. Paths are relative to the page, so the service also works under a path prefix.

/** An answer that was not a success, with the API's own code and message. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// What each status means to a person; the API's message follows, word for word.
const PLAIN = {
  0: "The service could not be reached",
  400: "The service could not read this file",
  404: "The model or version was not found",
  413: "This file is too large for the service",
  415: "This file is not an image the service can read",
  422: "The request was not valid",
  429: "The service is busy",
  500: "The service failed on this file",
  503: "The model is not ready yet",
};

/** A sentence for people: what went wrong in plain words, then what the API said. */
export function inWords(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in this page: ${error.message || error}`;
  const plain = PLAIN[error.status] || `The service answered HTTP ${error.status}`;
  return `${plain}. The service said: “${error.message}”`;
}

async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (failure) {
    throw new ApiError(0, "network", `no answer (${failure.message}); is the service running?`);
  }
  if (response.ok) return response;
  let code = `http_${response.status}`;
  let message = response.statusText || "no message";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // Not our JSON (a proxy's page, say): keep the status text.
  }
  throw new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

function query(params) {
  const entries = Object.entries(params).filter(([, value]) => value !== null && value !== undefined && value !== "");
  return entries.length ? `?${new URLSearchParams(entries)}` : "";
}

function modelPath(name, action) {
  return `v1/models/${encodeURIComponent(name)}${action ? `/${action}` : ""}`;
}

function imageForm(file) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted image");
  return form;
}

export async function listModels() {
  return (await call("v1/models")).json();
}

export async function readModel(name, version) {
  return (await call(modelPath(name) + query({ version }))).json();
}

/**
 * The top-k of one image: ``{model, results: [{file, predictions, ood_score, out_of_distribution,
 * prediction_set?}]}``; ``coverage`` (e.g. 0.9, or null) asks for a prediction set.
 */
export async function predict(name, version, file, topK, coverage = null) {
  const path = modelPath(name, "predict") + query({ version, top_k: topK, coverage });
  return (await call(path, { method: "POST", body: imageForm(file) })).json();
}

const wait = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** The occlusion heatmap of one class, with the overlay PNG; retried while the service is busy (429). */
export async function explain(name, version, file, classIndex, attempts = 30) {
  const path = modelPath(name, "explain") + query({ version, class: classIndex, overlay: "true", top_k: 1 });
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await (await call(path, { method: "POST", body: imageForm(file) })).json();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 429 || attempt >= attempts) throw error;
      await wait(Number(error.retryAfter) || 1);
    }
  }
}
