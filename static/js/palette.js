// Palette swatches with colour pickers. Attached to [data-palette], whose hidden input holds
// the colours ("#RRGGBB #RRGGBB ..."); editing a swatch rewrites it and fires "change".
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
        add.addEventListener("click", () => {
          write([...colours(), "#808080"], true);
          render();
          const picks = el.querySelectorAll("input[type=color]");
          picks[picks.length - 1].focus();
        });
        el.appendChild(add);
      }
    }
    el.paletteRender = render;
    render();
  }

  function initAll(root) {
    for (const el of root.querySelectorAll("[data-palette]")) init(el);
  }

  window.AtelierPalette = { init: initAll };
  document.addEventListener("htmx:load", (e) => initAll(e.target));
  if (document.readyState !== "loading") initAll(document);
  else document.addEventListener("DOMContentLoaded", () => initAll(document));
})();
