// The caption editor: the element list, style inheritance badges, save state, keyboard.
// Attached to [data-editor]; re-attached when htmx swaps the editor in (htmx:load).
// Saving is htmx's: the form posts itself on input (debounced) and on "save-now".
(function () {
  "use strict";

  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName))
    && el.type !== "button" && el.type !== "submit" && el.type !== "checkbox";

  let editor = null; // the current Editor; the page holds one

  // One zoom step is a quarter larger: eight steps double the size, fine enough for boxes.
  const ZOOM_STEP = 1.25;
  // At 8x one image pixel is 8 screen pixels: enough to place a box edge on a pixel.
  const ZOOM_MAX = 8;
  // Zooming out stops at a quarter of the fitted size: the whole image is small but legible.
  const ZOOM_OUT_OF_FIT = 4;
  // "Fit" leaves a fifth of the window's height for the toolbar and the page around the stage.
  const FIT_HEIGHT_SHARE = 0.8;
  // How often an open editor asks whether another tab or the engine saved a newer revision:
  // soon enough to know before typing much more, one small request per tab.
  const POLL_MS = 3000;

  const newId = () => {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  };

  // States in which the page holds typing the server has not taken: leaving asks first.
  const FAILED = new Set(["error", "invalid", "conflict"]);

  // The field the user is in when the editor is swapped (a merge with a save made elsewhere,
  // undo): found again in the new editor, with the caret where it was.
  let focusMemo = null;

  function rememberFocus(form) {
    const el = document.activeElement;
    if (!form || !el || !el.name || el.form !== form) return;
    const same = [...form.querySelectorAll(`[name="${el.name}"]`)];
    focusMemo = {
      name: el.name, index: same.indexOf(el), value: el.value, sent: el.dataset.sent,
      start: el.selectionStart, end: el.selectionEnd,
    };
  }

  function restoreFocus(form) {
    const memo = focusMemo;
    focusMemo = null;
    if (!memo || !form) return;
    const el = form.querySelectorAll(`[name="${memo.name}"]`)[memo.index];
    if (!el) return;
    // Typed while the save was on its way: kept, unless the merge brought another value.
    if (memo.sent !== undefined && memo.value !== memo.sent && el.value === memo.sent) {
      el.value = memo.value;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    }
    el.focus({ preventScroll: true });
    if (typeof memo.start === "number" && el.setSelectionRange) {
      try { el.setSelectionRange(memo.start, memo.end); } catch (_) { /* not a text field */ }
    }
  }

  class Editor {
    constructor(root) {
      this.root = root;
      this.form = root.querySelector("[data-caption-form]");
      this.list = root.querySelector("[data-elements]");
      this.template = root.querySelector("[data-element-template]");
      this.dirty = false;
      // What the form said when it was last sent (or loaded): leaving a field fires "change"
      // without changing anything, and that must neither mark it unsaved nor save again.
      this.sent = this.snapshot();
      const unchanged = (e) => {
        if (e.target.form === this.form && !this.failed && this.snapshot() === this.sent) e.stopImmediatePropagation();
      };
      this.form.addEventListener("input", unchanged, true);
      this.form.addEventListener("change", unchanged, true);
      this.form.addEventListener("input", (e) => this.onEdit(e));
      this.form.addEventListener("change", (e) => this.onEdit(e));
      this.form.addEventListener("click", (e) => this.onClick(e));
      this.form.addEventListener("box:new", (e) => this.addElement(e.detail.box));
      root.querySelector("[data-add-element]").addEventListener("click", () => this.addElement(null));
      for (const b of root.querySelectorAll("[data-zoom]")) {
        b.addEventListener("click", () => this.zoom(b.dataset.zoom));
      }
      const help = root.querySelector("[data-help-open]");
      if (help) help.addEventListener("click", () => this.help());
      const toggle = root.querySelector("[data-toggle-boxes]");
      if (toggle) toggle.addEventListener("click", () => this.boxes && this.boxes.toggleHidden());
      // Copying from the previous image saves over the newest revision: unsaved typing first.
      for (const b of root.querySelectorAll("[data-copy-previous]")) {
        b.addEventListener("click", (e) => {
          if (!this.dirty && this.saveState.dataset.state !== "saving") return;
          e.preventDefault();
          this.flush().then((ok) => { if (ok) document.getElementById(b.getAttribute("form")).requestSubmit(); });
        });
      }
      // Merge choices belong to the merge form: they must not set off an autosave.
      const foreign = (e) => {
        if (e.target.form && e.target.form !== this.form) e.stopImmediatePropagation();
      };
      this.form.addEventListener("input", foreign, true);
      this.form.addEventListener("change", foreign, true);
      this.renumber();
      this.updateInheritance();
      this.zoom("fit");
    }

    get boxes() {
      const stage = this.root.querySelector("[data-box-stage]");
      return stage && stage.boxEditor;
    }

    get saveState() {
      return this.root.querySelector("#save-state");
    }

    // The form as it would be sent, less the revision it edits (which every save renews).
    snapshot() {
      const data = new URLSearchParams(new FormData(this.form));
      data.delete("revision");
      return data.toString();
    }

    // The last save was refused or did not reach the server: the typing is only on this page.
    get failed() {
      const s = this.saveState;
      return !!s && FAILED.has(s.dataset.state);
    }

    // Typing not yet on the server that a save can still carry there.
    get pending() {
      const s = this.saveState;
      return !this.failed && (this.dirty || (!!s && s.dataset.state === "saving"));
    }

    // The tab is closing or going away with typing not yet sent: one last save that outlives
    // the page (a keepalive request), as the form would post it.
    saveOnExit() {
      if (!this.pending) return;
      const body = new URLSearchParams(new FormData(this.form));
      this.dirty = false;
      try {
        fetch(this.form.action, { method: "POST", body, keepalive: true, credentials: "same-origin", redirect: "manual" });
      } catch (_) { /* a body too large for keepalive: beforeunload has warned */ }
    }

    onEdit(e) {
      if (e.target.matches("[data-el-type]")) {
        e.target.closest("[data-element]").dataset.type = e.target.value;
        if (this.boxes) this.boxes.render(); // objects and text are drawn in their own colours
      }
      if (e.target.matches("[data-medium]")) {
        this.root.querySelector("[data-render-label]").textContent =
          e.target.value === "photograph" ? "Photo (camera, lens, film)" : "Art style (technique, brushwork)";
      }
      if (e.target.matches("[data-style-field]")) this.updateInheritance();
      this.markDirty();
    }

    markDirty() {
      this.dirty = true;
      const s = this.saveState;
      if (s && s.dataset.state !== "conflict") {
        s.dataset.state = "dirty";
        const text = s.querySelector("[data-state-text]");
        if (text) text.textContent = "Unsaved changes…";
      }
    }

    onClick(e) {
      const btn = e.target.closest("[data-act], [data-reset-style]");
      if (!btn) return;
      if (btn.dataset.resetStyle) {
        const field = this.form.querySelector(`[data-style-field="${btn.dataset.resetStyle}"]`);
        field.value = field.dataset.block;
        field.dispatchEvent(new Event("input", { bubbles: true }));
        return;
      }
      const li = btn.closest("[data-element]");
      const act = btn.dataset.act;
      if (act === "remove") this.removeElement(li);
      else if (act === "up" && li.previousElementSibling) li.parentNode.insertBefore(li, li.previousElementSibling);
      else if (act === "down" && li.nextElementSibling) li.parentNode.insertBefore(li.nextElementSibling, li);
      else if (act === "unbox" && this.boxes) this.boxes.setBox(li, null);
      else if (act === "draw" && this.boxes) {
        this.boxes.select(li);
        this.boxes.arm(li);
      }
      if (act === "up" || act === "down") this.structureChanged();
    }

    structureChanged() {
      this.renumber();
      if (this.boxes) this.boxes.render();
      this.form.dispatchEvent(new Event("change", { bubbles: true }));
    }

    renumber() {
      [...this.list.children].forEach((li, i) => {
        li.querySelector("[data-el-num]").textContent = String(i + 1);
      });
    }

    addElement(box) {
      const li = this.template.content.firstElementChild.cloneNode(true);
      // The element's own name from birth: a merge with another tab's edits tells it apart.
      li.querySelector("[data-el-id]").value = newId();
      this.list.appendChild(li);
      if (box) li.querySelector("[data-el-box]").value = window.AtelierBoxes.Geometry.format(box);
      li.querySelector("[data-box-state]").textContent = box ? "boxed" : "no box";
      window.AtelierPalette.init(li);
      this.structureChanged();
      // A box just drawn: the page stays still under the mouse (the list may be below).
      if (this.boxes) this.boxes.select(li, { scroll: !box });
      li.querySelector("[data-el-desc]").focus({ preventScroll: true });
      return li;
    }

    removeElement(li) {
      if (!li) return;
      const next = li.nextElementSibling || li.previousElementSibling;
      if (this.boxes && this.boxes.selected === li) this.boxes.select(null);
      li.remove();
      this.structureChanged();
      if (next && this.boxes) this.boxes.select(next);
    }

    updateInheritance() {
      for (const field of this.form.querySelectorAll("[data-style-field]")) {
        const badge = field.closest("label").querySelector("[data-inherit-badge]");
        const block = field.dataset.block;
        if (!badge) continue;
        if (!block) {
          badge.hidden = true;
          continue;
        }
        badge.hidden = false;
        const same = field.value.trim() === "" || field.value.trim() === block;
        badge.classList.toggle("overridden", !same);
        badge.innerHTML = "";
        badge.append(same ? "from the dataset" : "overrides the dataset ");
        if (!same) {
          const reset = document.createElement("button");
          reset.type = "button";
          reset.className = "link";
          reset.dataset.resetStyle = field.dataset.styleField;
          reset.textContent = "reset";
          badge.append(reset);
        }
      }
    }

    zoom(how) {
      const stage = this.root.querySelector("[data-box-stage]");
      const scroller = this.root.querySelector("[data-stage-scroll]");
      if (!stage || !scroller) return;
      const W = Number(stage.dataset.width), H = Number(stage.dataset.height);
      const fit = Math.min(1, scroller.clientWidth / W, (window.innerHeight * FIT_HEIGHT_SHARE) / H);
      if (how === "fit" || !this.scale) this.scale = fit;
      else if (how === "in") this.scale = Math.min(ZOOM_MAX, this.scale * ZOOM_STEP);
      else if (how === "out") this.scale = Math.max(fit / ZOOM_OUT_OF_FIT, this.scale / ZOOM_STEP);
      stage.style.width = Math.round(W * this.scale) + "px";
    }

    // Resolves once the form has no unsaved change (saving it now if needed).
    flush() {
      const s = this.saveState;
      if (!this.dirty && !(s && s.dataset.state === "saving")) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = () => {
          document.body.removeEventListener("atelier:saved", done);
          resolve(this.saveState && this.saveState.dataset.state === "saved");
        };
        document.body.addEventListener("atelier:saved", done);
        htmx.trigger(this.form, "save-now");
      });
    }

    async review(status) {
      if (!(await this.flush())) return;
      if (!this.revision) {
        const label = status === "approved" ? "approve it" : "mark it for review";
        window.AtelierNotify.show(`This image has no caption yet: write one or re-draft it, then ${label}.`);
        return;
      }
      const button = this.root.querySelector(`[data-set-status="${status}"]`);
      if (!button) return;
      const form = button.form;
      form.querySelector("[data-advance]").value = this.root.dataset.nextUrl || "";
      form.requestSubmit();
    }

    go(which) {
      const url = this.root.dataset[which === "next" ? "nextUrl" : "prevUrl"];
      if (url) this.flush().then(() => { window.location.href = url; });
    }

    jump(n) {
      const section = this.root.querySelector(`[data-jump="${n}"]`);
      if (!section) return;
      let field = section.querySelector("textarea, select, input:not([type=hidden])");
      if (n === "4" && this.boxes && this.boxes.selected) field = this.boxes.selected.querySelector("[data-el-desc]");
      const folded = field && field.closest("details:not([open])");
      if (folded) folded.open = true;
      if (field) field.focus();
    }

    selectStep(step) {
      const rows = [...this.list.children];
      if (!rows.length || !this.boxes) return;
      const i = rows.indexOf(this.boxes.selected);
      const next = rows[(i + step + rows.length) % rows.length] || rows[0];
      this.boxes.select(next);
    }

    // The revision this page shows (renewed by every save).
    get revision() {
      const input = this.root.querySelector("[data-revision]");
      return input ? Number(input.value) : 0;
    }

    // Another tab or the engine saved a newer revision: say so now, offer to load it.
    async poll() {
      const s = this.saveState;
      if (!s || s.dataset.state === "saving" || document.visibilityState !== "visible") return;
      let now;
      try {
        const r = await fetch(`/api/images/${this.root.dataset.imageId}/caption/revision`, { cache: "no-store" });
        if (!r.ok) return;
        now = await r.json();
      } catch (_) {
        return; // the server is away; the next save says so
      }
      // A save of ours may have landed while we asked: only a newer one than it counts.
      if (!this.root.isConnected || this.saveState.dataset.state === "saving") return;
      const notice = this.root.querySelector("[data-change-notice]");
      if (!notice) return;
      if (now.revision <= this.revision) {
        notice.hidden = true;
        return;
      }
      if (notice.dataset.seen === String(now.revision)) return; // dismissed
      const who = { engine: "the drafting engine", sidecar: "an import", user: "another tab or person" }[now.author] || "elsewhere";
      const when = now.saved_at ? new Date(now.saved_at).toLocaleTimeString() : "";
      notice.querySelector("[data-change-text]").textContent =
        `Revision ${now.revision} was saved by ${who}${when ? " at " + when : ""} while this page shows revision ${this.revision}.`
        + (this.dirty ? " Your unsaved changes will be merged with it when they save; loading it drops them." : "");
      notice.dataset.revision = String(now.revision);
      notice.hidden = false;
    }

    help() {
      const dialog = document.querySelector("[data-help]");
      if (dialog && !dialog.open) dialog.showModal();
    }

    onKey(e) {
      const ctrl = e.ctrlKey || e.metaKey;
      if (ctrl && e.key.toLowerCase() === "s") {
        e.preventDefault();
        htmx.trigger(this.form, "save-now");
        return;
      }
      if (e.key === "Escape") {
        if (this.boxes && this.boxes.cancel()) return;
        if (typing(document.activeElement)) document.activeElement.blur();
        else if (this.boxes) this.boxes.select(null);
        return;
      }
      if (typing(e.target) || e.altKey) return;
      if (ctrl) {
        const key = e.key.toLowerCase();
        if (key === "z" || key === "y") {
          e.preventDefault();
          const which = key === "y" || e.shiftKey ? "[data-redo]" : "[data-undo]";
          this.flush().then(() => {
            // Found after the flush: the review block may have been swapped in meanwhile, and
            // a form htmx has not yet wired would submit natively and leave the page.
            const form = this.root.querySelector(which);
            if (!form) return;
            htmx.process(form);
            form.requestSubmit();
          });
        }
        return;
      }
      const big = e.shiftKey ? 10 : 1;
      const nudge = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
      if (nudge && this.boxes && this.boxes.selected) {
        e.preventDefault();
        this.boxes.nudge((nudge[0] * big) / 1000, (nudge[1] * big) / 1000);
        return;
      }
      const actions = {
        j: () => this.go("next"),
        k: () => this.go("prev"),
        a: () => this.review("approved"),
        r: () => this.review("needs_review"),
        h: () => this.boxes && this.boxes.toggleHidden(),
        b: () => {
          const sel = this.boxes && this.boxes.selected;
          if (this.boxes) this.boxes.arm(sel && !this.boxes.boxOf(sel) ? sel : "new");
        },
        e: () => this.selectStep(1),
        E: () => this.selectStep(-1),
        Delete: () => this.boxes && this.removeElement(this.boxes.selected),
        Backspace: () => this.boxes && this.removeElement(this.boxes.selected),
        "1": () => this.jump("1"),
        "2": () => this.jump("2"),
        "3": () => this.jump("3"),
        "4": () => this.jump("4"),
        p: () => this.root.querySelector("[data-palettes-from-pixels]").click(),
        "+": () => this.zoom("in"),
        "=": () => this.zoom("in"),
        "-": () => this.zoom("out"),
        "0": () => this.zoom("fit"),
        "?": () => this.help(),
      };
      const action = actions[e.key];
      if (action) {
        e.preventDefault();
        action();
      }
    }
  }

  function init(root) {
    const el = root.matches && root.matches("[data-editor]") ? root : root.querySelector && root.querySelector("[data-editor]");
    if (el && !el.editor) {
      el.editor = new Editor(el);
      editor = el.editor;
      restoreFocus(editor.form);
    }
  }

  // Dismissing a notice: a change notice stays away until a newer revision still.
  document.addEventListener("click", (e) => {
    const button = e.target.closest("[data-dismiss]");
    if (!button) return;
    const notice = button.closest("[data-change-notice], #redraft-status, .notice");
    if (!notice) return;
    if (notice.matches("[data-change-notice]")) notice.dataset.seen = notice.dataset.revision || "";
    if (notice.id === "redraft-status") notice.replaceChildren(); // kept: the next re-draft's target
    notice.hidden = true;
  });
  setInterval(() => { if (editor) editor.poll(); }, POLL_MS);

  document.addEventListener("keydown", (e) => { if (editor && !document.querySelector("dialog[open]")) editor.onKey(e); });
  document.addEventListener("htmx:load", (e) => init(e.target));
  document.addEventListener("htmx:beforeSwap", (e) => {
    if (editor && e.detail.target && e.detail.target.id === "editor") rememberFocus(editor.form);
  });
  document.addEventListener("htmx:beforeRequest", (e) => {
    if (editor && e.detail.elt === editor.form) {
      const el = document.activeElement;
      if (el && el.form === editor.form && "value" in el) el.dataset.sent = el.value;
      editor.sent = editor.snapshot();
      editor.dirty = false;
      const s = editor.saveState;
      if (s && s.dataset.state !== "conflict") s.dataset.state = "saving";
    }
  });
  document.addEventListener("htmx:afterRequest", (e) => {
    // The caption form may be a new one by now: a merged save swaps the editor.
    const elt = e.detail.elt;
    if (editor && elt && elt.matches && elt.matches("[data-caption-form]")) {
      if (editor.dirty) editor.markDirty();
      document.body.dispatchEvent(new Event("atelier:saved"));
    }
  });
  document.addEventListener("htmx:sendError", () => {
    const s = editor && editor.saveState;
    if (s) {
      s.dataset.state = "error";
      const text = s.querySelector("[data-state-text]");
      if (text) text.textContent = "Not saved: the server cannot be reached. Your changes are kept here.";
      editor.dirty = true;
    }
  });
  // Every way out of the editor saves first. A link waits for the save, then follows; a form
  // that leaves the page (or changes the caption elsewhere) is sent once the save has landed.
  document.addEventListener("click", (e) => {
    if (!editor || !editor.pending || e.defaultPrevented || e.button !== 0) return;
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return; // a new tab: this one stays
    const a = e.target.closest("a[href]");
    if (!a || (a.target && a.target !== "_self") || a.hasAttribute("download")) return;
    const href = a.getAttribute("href");
    if (!href || href.startsWith("#") || a.getAttribute("aria-disabled") === "true") return;
    e.preventDefault();
    editor.flush().then((ok) => { if (ok) window.location.href = a.href; });
  });
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!editor || !editor.pending || form === editor.form || form.id === "merge-form") return;
    if ((form.getAttribute("method") || "").toLowerCase() === "dialog") return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const submitter = e.submitter;
    editor.flush().then((ok) => { if (ok) form.requestSubmit(submitter || undefined); });
  }, true);
  // Closing the tab: pending typing goes out as a keepalive save, so no question is needed;
  // only a save that failed (the typing is on this page alone) asks "Leave site?".
  window.addEventListener("beforeunload", (e) => {
    if (editor && editor.failed) e.preventDefault();
  });
  window.addEventListener("pagehide", () => { if (editor) editor.saveOnExit(); });
  if (document.readyState !== "loading") init(document);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
