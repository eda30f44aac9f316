// The trainer's centre crop over the painting. Attached to [data-crop]: a select of training
// resolutions whose options carry the part of the image the trainer keeps at each
// (data-window: [x0, y0, x1, y1] in 0..1 of the image, from app/images/buckets.py; the
// option's text says what is cut). The margins cut away are shaded over the painting, and the
// choice survives htmx swaps and the next image.
(function () {
  "use strict";

  const KEY = "atelier.crop-resolution";
  const SHADE = "rgba(10, 8, 6, .62)";

  function place(el, x0, y0, x1, y1) {
    el.style.left = x0 * 100 + "%";
    el.style.top = y0 * 100 + "%";
    el.style.width = Math.max(0, x1 - x0) * 100 + "%";
    el.style.height = Math.max(0, y1 - y0) * 100 + "%";
  }

  function init(control) {
    if (control.cropReady) return;
    const scope = control.closest("[data-editor]") || document;
    const stage = scope.querySelector("[data-box-stage]");
    const select = control.querySelector("[data-crop-resolution]");
    if (!stage || !select) return;
    control.cropReady = true;

    const layer = document.createElement("div");
    layer.dataset.cropLayer = "";
    layer.hidden = true;
    // Above the boxes, so a box the crop cuts is visibly cut, but never in the way of a drag.
    Object.assign(layer.style, { position: "absolute", inset: "0", pointerEvents: "none" });
    const part = (name, style) => {
      const el = document.createElement("div");
      el.dataset.cropPart = name;
      Object.assign(el.style, { position: "absolute" }, style);
      layer.appendChild(el);
      return el;
    };
    const shades = ["top", "bottom", "left", "right"].map((n) => part(n, { background: SHADE }));
    const frame = part("kept", { outline: "2px dashed #ffd27a", outlineOffset: "-1px" });
    stage.appendChild(layer);

    function show() {
      const option = select.selectedOptions[0];
      const win = option && option.dataset.window ? JSON.parse(option.dataset.window) : null;
      layer.hidden = !win;
      if (!win) return;
      const [x0, y0, x1, y1] = win;
      const [top, bottom, left, right] = shades;
      place(top, 0, 0, 1, y0);
      place(bottom, 0, y1, 1, 1);
      place(left, 0, y0, x0, y1);
      place(right, x1, y0, 1, y1);
      place(frame, x0, y0, x1, y1);
    }

    const remembered = sessionStorage.getItem(KEY);
    if (remembered && [...select.options].some((o) => o.value === remembered)) {
      select.value = remembered;
    }
    select.addEventListener("change", () => {
      sessionStorage.setItem(KEY, select.value);
      show();
    });
    show();
  }

  function initAll(root) {
    for (const el of root.querySelectorAll("[data-crop]")) init(el);
  }

  document.addEventListener("htmx:load", (e) => initAll(e.target));
  if (document.readyState !== "loading") initAll(document);
  else document.addEventListener("DOMContentLoaded", () => initAll(document));
})();
