// The drafting card's choice form: typing in a source's fields (a folder, a server's address)
// or picking a model ticks that source, so "Use this" uses what was just typed. Attached to
// [data-engine-choice]; re-attached on htmx:load (the card replaces itself).
(function () {
  "use strict";

  function attach(root) {
    if (root.dataset.choiceReady) return;
    root.dataset.choiceReady = "1";
    const pick = (e) => {
      const field = e.target.closest("[data-source-field]");
      if (!field) return;
      const radio = root.querySelector(`input[name="source"][value="${field.dataset.sourceField}"]`);
      if (radio) radio.checked = true;
    };
    root.addEventListener("input", pick);
    root.addEventListener("change", pick);
  }

  function init(scope) {
    if (scope.matches && scope.matches("[data-engine-choice]")) attach(scope);
    scope.querySelectorAll && scope.querySelectorAll("[data-engine-choice]").forEach(attach);
  }
  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:load", (e) => init(e.target));
})();
