// The Train form: a refusal (4xx) comes back as the form itself, with the sentence and the
// values typed; htmx swaps it in like any answer, instead of dropping it as an error.
(function () {
  "use strict";
  if (window.atelierTrainForm) return; // the partial brings this script each time it is swapped
  window.atelierTrainForm = true;
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    var status = evt.detail.xhr.status;
    if (target && target.matches && target.matches("[data-train-form]") && status >= 400 && status < 500) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });
})();
