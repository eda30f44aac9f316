// Palette swatches with colour pickers. Attached to [data-palette], whose hidden input holds
// the colours ("#RRGGBB #RRGGBB ..."); editing a swatch rewrites it and fires "change".
// "+" opens a picker (the browser's colour input, a #RRGGBB field and an eyedropper over the
// painting); nothing is added, nor saved, until its "Add".
(function () {
  "use strict";

  function init(el) {
    if (el.dataset.ready) return;
    el.dataset.ready = "1";
    const input = el.querySelector("input[type=hidden]");
    const max = Number(el.dataset.max || 16);
    const colours = () => input.value.split(/[\s,]+/).filter(Boolean);

    function write(list, announce) {
      input.value = list.map((c) => c.toUpperCase()).join(" ");
      if (announce) input.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function render() {
      for (const old of el.querySelectorAll(".swatch, .swatch-add")) old.remove();
      colours().forEach((c, i) => {
        const sw = document.createElement("span");
        sw.className = "swatch";
        const pick = document.createElement("input");
        pick.type = "color";
        pick.value = /^#[0-9a-fA-F]{6}$/.test(c) ? c.toLowerCase() : "#000000";
        pick.title = c;
        pick.setAttribute("aria-label", "colour " + (i + 1));
        pick.addEventListener("input", () => {
          const list = colours();
          list[i] = pick.value;
          write(list, false);
          pick.title = pick.value.toUpperCase();
        });
        pick.addEventListener("change", () => write(colours(), true));
        const del = document.createElement("button");
        del.type = "button";
        del.className = "swatch-del";
        del.textContent = "×";
        del.title = "Remove " + c;
        del.addEventListener("click", () => {
          const list = colours();
          list.splice(i, 1);
          write(list, true);
          render();
        });
        sw.append(pick, del);
        el.appendChild(sw);
      });
      if (colours().length < max) {
        const add = document.createElement("button");
        add.type = "button";
        add.className = "swatch-add small secondary";
        add.textContent = "+";
        add.title = "Add a colour";
        add.setAttribute("aria-expanded", "false");
        add.addEventListener("click", () => openPicker(el, add, (colour) => {
          write([...colours(), colour], true);
          render();
        }));
        el.appendChild(add);
      }
    }
    el.paletteRender = render;
    render();
  }

  const HEX = /^#?[0-9a-fA-F]{6}$/;
  const hex = (r, g, b) => "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("").toUpperCase();

  // The painting's pixels at full size, drawn once per image (the file is this site's own).
  function pixels(img) {
    if (img.atelierPixels) return img.atelierPixels;
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    img.atelierPixels = ctx;
    return ctx;
  }

  // The colour of the painting under a pointer event on its stage.
  function colourAt(stage, ev) {
    const img = stage.querySelector("img");
    const r = img.getBoundingClientRect();
    const x = Math.min(img.naturalWidth - 1, Math.max(0, Math.floor(((ev.clientX - r.left) / r.width) * img.naturalWidth)));
    const y = Math.min(img.naturalHeight - 1, Math.max(0, Math.floor(((ev.clientY - r.top) / r.height) * img.naturalHeight)));
    const d = pixels(img).getImageData(x, y, 1, 1).data;
    return hex(d[0], d[1], d[2]);
  }

  // The eyedropper: the next click on the painting picks its colour (and draws no box);
  // moving over it previews the colour; Esc stops.
  function eyedropper(onPreview, onPick, onStop) {
    const stage = document.querySelector("[data-box-stage]");
    if (!stage) return null;
    stage.classList.add("eyedropping");
    const swallow = (e) => { e.stopPropagation(); e.preventDefault(); };
    const down = (e) => {
      if (e.button !== 0) return;
      swallow(e);
      onPick(colourAt(stage, e));
      stop();
    };
    const move = (e) => { e.stopPropagation(); onPreview(colourAt(stage, e)); };
    const key = (e) => {
      if (e.key !== "Escape") return;
      swallow(e);
      stop();
    };
    function stop() {
      stage.classList.remove("eyedropping");
      stage.removeEventListener("pointerdown", down, true);
      stage.removeEventListener("pointermove", move, true);
      stage.removeEventListener("click", swallow, true);
      document.removeEventListener("keydown", key, true);
      onStop();
    }
    stage.addEventListener("pointerdown", down, true);
    stage.addEventListener("pointermove", move, true);
    stage.addEventListener("click", swallow, true);
    document.addEventListener("keydown", key, true);
    return stop;
  }

  // One picker open at a time; `done(colour)` is called by "Add" only.
  let openOne = null;

  function openPicker(el, add, done) {
    if (openOne) openOne();
    const box = document.createElement("div");
    box.className = "colour-picker";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Add a colour");
    box.dataset.colourPicker = "";
    const swatch = document.createElement("input");
    swatch.type = "color";
    swatch.value = "#808080";
    swatch.setAttribute("aria-label", "Colour");
    const field = document.createElement("input");
    field.type = "text";
    field.value = "";
    field.placeholder = "#RRGGBB";
    field.maxLength = 7;
    field.size = 8;
    field.spellcheck = false;
    field.setAttribute("aria-label", "Colour as #RRGGBB");
    field.dataset.pickHex = "";
    const dropper = document.createElement("button");
    dropper.type = "button";
    dropper.className = "small secondary";
    dropper.textContent = "pick from the painting";
    dropper.title = "Click a point of the painting to take its colour (Esc stops)";
    dropper.dataset.eyedropper = "";
    const ok = document.createElement("button");
    ok.type = "button";
    ok.className = "small";
    ok.textContent = "Add";
    ok.dataset.pickAdd = "";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "small secondary";
    cancel.textContent = "Cancel";
    const hint = document.createElement("span");
    hint.className = "meta";
    hint.dataset.pickHint = "";
    box.append(swatch, field, dropper, ok, cancel, hint);
    if (!document.querySelector("[data-box-stage]")) dropper.hidden = true;

    let stopDropper = null;
    const show = (colour) => {
      swatch.value = colour.toLowerCase();
      field.value = colour;
      field.removeAttribute("aria-invalid");
    };
    const chosen = () => (HEX.test(field.value.trim()) ? "#" + field.value.trim().replace("#", "").toUpperCase() : null);
    function close() {
      if (stopDropper) stopDropper();
      box.remove();
      add.setAttribute("aria-expanded", "false");
      openOne = null;
    }
    // The picker's own fields are no part of the caption: their events stop here.
    for (const type of ["input", "change"]) box.addEventListener(type, (e) => e.stopPropagation());
    swatch.addEventListener("input", () => show(swatch.value.toUpperCase()));
    field.addEventListener("input", () => {
      const c = chosen();
      field.toggleAttribute("aria-invalid", !c && field.value.trim() !== "");
      if (c) swatch.value = c.toLowerCase();
    });
    dropper.addEventListener("click", () => {
      if (stopDropper) { stopDropper(); return; }
      hint.textContent = "Click the painting to take a colour; Esc stops.";
      dropper.setAttribute("aria-pressed", "true");
      stopDropper = eyedropper(show, show, () => {
        stopDropper = null;
        hint.textContent = "";
        dropper.setAttribute("aria-pressed", "false");
        field.focus({ preventScroll: true });
      });
    });
    const accept = () => {
      const c = chosen() || (field.value.trim() === "" ? swatch.value.toUpperCase() : null);
      if (!c) {
        field.setAttribute("aria-invalid", "");
        hint.textContent = "Write the colour as #RRGGBB.";
        return;
      }
      close();
      done(c);
    };
    ok.addEventListener("click", accept);
    cancel.addEventListener("click", () => { close(); add.focus(); });
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        e.preventDefault();
        close();
        add.focus();
      } else if (e.key === "Enter" && e.target === field) {
        e.preventDefault();
        accept();
      }
    });
    el.appendChild(box);
    add.setAttribute("aria-expanded", "true");
    openOne = close;
    field.focus({ preventScroll: true });
  }

  function initAll(root) {
    for (const el of root.querySelectorAll("[data-palette]")) init(el);
  }

  window.AtelierPalette = { init: initAll };
  document.addEventListener("htmx:load", (e) => initAll(e.target));
  if (document.readyState !== "loading") initAll(document);
  else document.addEventListener("DOMContentLoaded", () => initAll(document));
})();
