// The export page's sample set: an edit not yet saved is said so, and the Train form saves it
// before it trains (the set travels with the export form, not with the Train form).
(function () {
  "use strict";
  if (window.atelierSampleSet) return;
  window.atelierSampleSet = true;
  var dirty = false;

  function card() { return document.querySelector("[data-sample-set]"); }

  function mark(on, text) {
    dirty = on;
    var note = document.querySelector("[data-samples-unsaved]");
    if (!note) return;
    note.hidden = !on && !text;
    if (text) note.textContent = text;
  }

  function attach(root) {
    var c = root.querySelector ? (root.matches && root.matches("[data-sample-set]") ? root : root.querySelector("[data-sample-set]")) : null;
    if (!c || c.dataset.watched) return;
    c.dataset.watched = "1";
    var edited = function () { mark(true); };
    c.addEventListener("input", edited);
    c.addEventListener("change", edited);
  }

  document.addEventListener("DOMContentLoaded", function () { attach(document); });
  document.addEventListener("htmx:load", function (evt) { attach(evt.target); });

  // htmx asks before the Train form's request: save the edited set first, then send it.
  document.addEventListener("htmx:confirm", function (evt) {
    var form = evt.target;
    if (!dirty || !form.matches || !form.matches("[data-train-form]") || !card()) return;
    var exportForm = document.getElementById("export-form");
    if (!exportForm) return;
    evt.preventDefault();
    var body = new FormData(exportForm);
    body.set("action", "save_samples");
    // getAttribute: the form's buttons are named "action", which shadows form.action.
    fetch(exportForm.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) {
        return r.text().then(function (html) {
          if (r.ok) {
            mark(false);
            evt.detail.issueRequest(true);
            return;
          }
          var page = new DOMParser().parseFromString(html, "text/html");
          var why = page.querySelector("[role=alert]");
          mark(true, "The sample set could not be saved, so training did not start: " +
            (why ? why.textContent.trim() : "HTTP " + r.status) + " Fix it above, then train again.");
          card().scrollIntoView({ block: "start" });
        });
      })
      .catch(function () {
        mark(true, "The sample set could not be saved (no answer from Atelier), so training did not start.");
      });
  });
})();
