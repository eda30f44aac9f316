// Shows the sentence of a refused htmx request (sent as an "atelier:error" HX-Trigger event)
// without replacing anything on the page.
(function () {
  "use strict";

  function show(message) {
    let box = document.querySelector("[data-toast]");
    if (!box) {
      box = document.createElement("div");
      box.className = "toast";
      box.setAttribute("role", "alert");
      box.dataset.toast = "";
      document.body.appendChild(box);
    }
    box.textContent = message;
    box.hidden = false;
    clearTimeout(box.timer);
    box.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  document.addEventListener("atelier:error", (e) => show(e.detail.message || "That did not work."));
  document.addEventListener("htmx:sendError", () => show("The server cannot be reached."));
  window.AtelierNotify = { show };
})();
