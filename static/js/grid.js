// The grid's selection: tick a tile, shift-tick a range; while something is selected a click on
// a picture selects it rather than opening it. The bulk form (#bulk) posts the ticked ids; it
// works without this script too, one tick at a time.
(function () {
  "use strict";

  let last = null; // the checkbox ticked last: a shift-click selects from it

  const checks = () => [...document.querySelectorAll("[data-tile-check]")];

  function update() {
    const form = document.querySelector("[data-bulk]");
    if (!form) return;
    const all = checks();
    const ticked = all.filter((c) => c.checked);
    const every = form.querySelector("[data-select-all]");
    const page = form.querySelector("[data-select-page]");
    for (const c of all) c.closest(".tile").classList.toggle("selected", c.checked || every.checked);
    if (page) {
      page.checked = all.length > 0 && ticked.length === all.length;
      page.indeterminate = ticked.length > 0 && ticked.length < all.length;
    }
    const count = form.querySelector("[data-bulk-count]");
    if (!count.dataset.idle) count.dataset.idle = count.textContent;
    const total = every.labels[0].textContent.match(/\d+/);
    count.textContent = every.checked
      ? `${total ? total[0] : "all"} selected (every match)`
      : ticked.length ? `${ticked.length} selected` : count.dataset.idle;
    const none = !every.checked && !ticked.length;
    for (const b of form.querySelectorAll(".bulk-actions button")) b.disabled = none;
    form.classList.toggle("active", !none);
    document.querySelector("[data-grid]")?.classList.toggle("selecting", !none);
  }

  function tick(box, on, range) {
    if (range && last && last !== box) {
      const all = checks();
      const [a, b] = [all.indexOf(last), all.indexOf(box)].sort((x, y) => x - y);
      if (a >= 0) for (const c of all.slice(a, b + 1)) c.checked = on;
    }
    box.checked = on;
    last = box;
    update();
  }

  document.addEventListener("click", (e) => {
    const box = e.target.closest("[data-tile-check]");
    if (box) {
      // The browser has already flipped it; a shift-click carries the new state over the range.
      tick(box, box.checked, e.shiftKey);
      return;
    }
    const thumb = e.target.closest("[data-grid].selecting .tile a.thumb");
    if (thumb && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      const c = thumb.closest(".tile").querySelector("[data-tile-check]");
      tick(c, !c.checked, e.shiftKey);
    }
  });

  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-select-page]")) {
      for (const c of checks()) c.checked = e.target.checked;
      last = null;
      update();
    } else if (e.target.matches("[data-select-all]")) {
      update();
    }
  });

  // A grid swapped in by a filter, a search or a refresh starts with nothing selected, and
  // the search form (outside it) searches within the grid's filter from then on.
  document.addEventListener("htmx:load", (e) => {
    // Only a new grid starts the selection over: another region loading (the drafting
    // card, the notices) between two clicks must not break a shift-click range.
    const el = e.target;
    const isGrid = el.matches && (el.matches("[data-grid]") || el.querySelector("[data-grid]"));
    if (!isGrid) return;
    last = null;
    update();
    const grid = document.querySelector("[data-grid]");
    const tools = document.querySelector(".grid-tools");
    if (grid && tools) {
      tools.querySelector("[data-grid-status]").value = grid.dataset.status;
      tools.querySelector("[data-grid-flag]").value = grid.dataset.flag;
    }
  });
  document.addEventListener("DOMContentLoaded", update);
})();
