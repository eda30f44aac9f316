// The training board: move across steps and prompts with the keyboard, select 2 to 4
// samples to compare, favourites, the prompt's boxes on a toggle; on the compare page,
// one zoom and pan shared by every view. Attached by data-board / data-compare.
(() => {
  "use strict";

  // --- boxes, on both pages ----------------------------------------------------------
  function setBoxes(on) {
    document.body.classList.toggle("show-boxes", on);
    document.querySelectorAll("[data-boxes-toggle]").forEach((t) => { t.checked = on; });
    sessionStorage.setItem("atelier.boxes", on ? "1" : "");
  }

  // --- selection for the comparison (kept across the grid's live refreshes) ---------
  function selectionKey(board) { return "atelier.compare." + board.dataset.query; }
  function selection(board) {
    try { return JSON.parse(sessionStorage.getItem(selectionKey(board)) || "[]"); } catch { return []; }
  }
  function saveSelection(board, names) {
    sessionStorage.setItem(selectionKey(board), JSON.stringify(names));
    const link = document.querySelector("[data-compare-link]");
    const count = document.querySelector("[data-compare-count]");
    if (count) count.textContent = String(names.length);
    if (link) {
      const ok = names.length >= 2 && names.length <= 4;
      link.setAttribute("aria-disabled", ok ? "false" : "true");
      link.href = ok
        ? "/board/compare?" + board.dataset.query + names.map((n) => "&s=" + encodeURIComponent(n)).join("")
        : "#";
    }
  }
  function toggleSelect(board, name) {
    let names = selection(board);
    names = names.includes(name) ? names.filter((n) => n !== name) : [...names, name].slice(-4);
    saveSelection(board, names);
    paintSelection(board);
  }
  function paintSelection(board) {
    const names = selection(board);
    board.querySelectorAll("[data-cell]").forEach((cell) => {
      const on = names.includes(cell.dataset.name);
      cell.classList.toggle("selected", on);
      const box = cell.querySelector("[data-select]");
      if (box) box.checked = on;
    });
    saveSelection(board, names);
  }

  // --- keyboard: a focus position (row, column) over the grid --------------------------
  let focusAt = null;
  let restoreFocus = false; // only when the focus was on the grid a refresh replaced
  document.addEventListener("htmx:beforeSwap", () => {
    restoreFocus = !!(document.activeElement && document.activeElement.closest("[data-board]"));
  });
  function cellAt(board, r, c) { return board.querySelector(`[data-cell][data-r="${r}"][data-c="${c}"]`); }
  function focusCell(cell) {
    if (!cell) return false;
    cell.focus({ preventScroll: false });
    focusAt = { r: +cell.dataset.r, c: +cell.dataset.c };
    return true;
  }
  function move(board, dr, dc) {
    const current = document.activeElement && document.activeElement.closest("[data-cell]");
    let r = current ? +current.dataset.r : 0;
    let c = current ? +current.dataset.c : 0;
    if (!current) return focusCell(board.querySelector("[data-cell]"));
    // Skip the holes (a step that has no sample for this prompt).
    for (let i = 0; i < 200; i++) {
      r += dr; c += dc;
      if (r < 0 || c < 0) return false;
      const next = cellAt(board, r, c);
      if (next) return focusCell(next);
      if (!board.querySelector(`[data-r="${r}"]`)) return false;
      if (dr !== 0 && !board.querySelector(`[data-r="${r}"][data-c="${c}"]`)) {
        const row = [...board.querySelectorAll(`[data-cell][data-r="${r}"]`)];
        if (row.length) return focusCell(row[Math.min(c, row.length - 1)]);
      }
    }
    return false;
  }

  function initBoard(board) {
    if (board.dataset.ready) return;
    board.dataset.ready = "1";
    paintSelection(board);
    if (focusAt && restoreFocus) focusCell(cellAt(board, focusAt.r, focusAt.c));
    board.addEventListener("change", (e) => {
      const box = e.target.closest("[data-select]");
      if (box) toggleSelect(board, box.value);
    });
    board.addEventListener("click", (e) => {
      const cell = e.target.closest("[data-cell]");
      if (cell && !e.target.closest("a, button, input")) focusCell(cell);
    });
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "b") { setBoxes(!document.body.classList.contains("show-boxes")); return; }
    const board = document.querySelector("[data-board]");
    if (!board) return;
    const cell = document.activeElement && document.activeElement.closest("[data-cell]");
    const moves = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] };
    if (moves[e.key]) { e.preventDefault(); move(board, ...moves[e.key]); return; }
    if (!cell) return;
    if (e.key === " ") { e.preventDefault(); toggleSelect(board, cell.dataset.name); }
    else if (e.key === "f") { cell.querySelector("[data-fav]").click(); }
    else if (e.key === "Enter") { cell.querySelector("[data-full]").click(); }
    else if (e.key === "c") {
      const link = document.querySelector("[data-compare-link]");
      if (link && link.getAttribute("aria-disabled") === "false") link.click();
    }
  });
  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-boxes-toggle]")) setBoxes(e.target.checked);
  });
  document.addEventListener("click", (e) => {
    const link = e.target.closest("[data-compare-link]");
    if (link && link.getAttribute("aria-disabled") === "true") e.preventDefault();
  });

  // --- compare: one zoom and pan for every view ---------------------------------------
  function initCompare(root) {
    if (root.dataset.ready) return;
    root.dataset.ready = "1";
    const view = { scale: 1, x: 0, y: 0 };
    const panes = [...root.querySelectorAll("[data-pane]")];
    const apply = () => panes.forEach((p) => {
      p.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    });
    const zoom = (factor, ox, oy) => {
      const next = Math.min(16, Math.max(1, view.scale * factor));
      const k = next / view.scale;
      // Keep the point under the cursor still while zooming.
      view.x = ox - (ox - view.x) * k;
      view.y = oy - (oy - view.y) * k;
      view.scale = next;
      if (next === 1) { view.x = 0; view.y = 0; }
      apply();
    };
    root.querySelectorAll("[data-viewport]").forEach((vp) => {
      vp.addEventListener("wheel", (e) => {
        e.preventDefault();
        const r = vp.getBoundingClientRect();
        zoom(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
      }, { passive: false });
      let drag = null;
      vp.addEventListener("pointerdown", (e) => {
        drag = { x: e.clientX - view.x, y: e.clientY - view.y };
        vp.setPointerCapture(e.pointerId);
      });
      vp.addEventListener("pointermove", (e) => {
        if (!drag) return;
        view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply();
      });
      vp.addEventListener("pointerup", () => { drag = null; });
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea")) return;
      const vp = root.querySelector("[data-viewport]");
      const cx = vp.clientWidth / 2, cy = vp.clientHeight / 2;
      if (e.key === "+" || e.key === "=") zoom(1.25, cx, cy);
      else if (e.key === "-") zoom(0.8, cx, cy);
      else if (e.key === "0") { view.scale = 1; view.x = 0; view.y = 0; apply(); }
    });
    root.view = view; // for tests and the console: the one shared state
  }

  function init(scope) {
    scope.querySelectorAll("[data-board]").forEach(initBoard);
    if (scope.matches && scope.matches("[data-board]")) initBoard(scope);
    scope.querySelectorAll("[data-compare]").forEach(initCompare);
  }
  document.addEventListener("DOMContentLoaded", () => {
    setBoxes(sessionStorage.getItem("atelier.boxes") === "1");
    init(document);
  });
  document.addEventListener("htmx:load", (e) => init(e.target));
})();
