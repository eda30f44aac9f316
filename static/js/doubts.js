// Marks the editor's fields and elements the drafting model was unsure of (the list in
// _doubts.html): the field gets the class "unsure" and the figure on hover.
(() => {
  const fieldFor = {
    high_level_description: '[name="high_level_description"]',
    "style.aesthetics": '[data-style-field="aesthetics"]',
    "style.lighting": '[data-style-field="lighting"]',
    "style.medium": '[data-style-field="medium"]',
    "style.render": '[data-style-field="render"]',
    "composition.background": '[name="background"]',
  };
  const partFor = { desc: "[data-el-desc]", text: "[data-el-text]", type: "[data-el-type]" };

  function target(form, path) {
    if (path in fieldFor) return form.querySelector(fieldFor[path]);
    const [element, part] = path.replace(/^element:/, "").split(".");
    const id = form.querySelector(`[data-el-id][value="${CSS.escape(element)}"]`);
    const li = id && id.closest("[data-element]");
    if (!li) return null;
    if (!part || part === "box") return li;
    return li.querySelector(partFor[part]);
  }

  function mark(root) {
    const list = root.querySelector ? root.querySelector("[data-doubts]") : null;
    const form = document.querySelector("[data-caption-form]");
    if (!list || !form) return;
    for (const item of list.querySelectorAll("[data-doubt]")) {
      const el = target(form, item.dataset.doubt);
      if (!el) continue;
      if (item.dataset.doubt.endsWith(".box")) {
        // The box itself, drawn by boxes.js, is marked from this attribute at every redraw.
        el.dataset.unsureBox = `The model was unsure of this box: ${item.title}`;
        const stage = document.querySelector("[data-box-stage]");
        if (stage && stage.boxEditor) stage.boxEditor.render();
      }
      el.classList.add("unsure");
      el.title = `The model was unsure here: ${item.title}`;
    }
    // A transcription read differently from its box alone: its text field too.
    const elements = form.querySelectorAll("[data-element]");
    for (const item of list.querySelectorAll("[data-reading]")) {
      const li = elements[Number(item.dataset.reading) - 1];
      const text = li && li.querySelector("[data-el-text]");
      if (!text) continue;
      text.classList.add("unsure");
      text.title = "Read differently from its box alone: see \"Check these first\"";
    }
  }

  document.addEventListener("htmx:load", (e) => mark(e.target));
  if (document.readyState !== "loading") mark(document);
  else document.addEventListener("DOMContentLoaded", () => mark(document));
})();
