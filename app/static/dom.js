// Building the page from data without innerHTML: labels and file names are text, never markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: ``el("p", {class: "note"}, "text", child, ...)``. */
export function el(tag, attributes = {}, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/** An SVG element, same call shape as ``el``. */
export function svg(tag, attributes = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

export function percent(value, digits = 1) {
  return `${(value * 100).toFixed(digits)}%`;
}

/** A two-column list of terms and their values (rows with an empty value are left out). */
export function definitions(rows) {
  const list = el("dl", { class: "facts" });
  for (const [term, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", {}, term), el("dd", {}, value));
  }
  return list;
}

/** A table with a header row; ``numeric`` names the columns to right-align. */
export function table(caption, headers, rows, numeric = []) {
  const head = el("tr", {}, headers.map((header) => el("th", { scope: "col" }, header)));
  const body = rows.map((cells) =>
    el(
      "tr",
      {},
      cells.map((cell, i) => (i === 0 ? el("th", { scope: "row" }, cell) : el("td", { class: numeric.includes(i) ? "num" : null }, cell))),
    ),
  );
  return el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body));
}
