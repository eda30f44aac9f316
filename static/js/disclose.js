// A <details data-load-on-open> tells htmx "opened" each time it opens (not when it closes),
// so its hx-trigger needs no filter expression, which htmx would evaluate as script and the
// Content-Security-Policy (script-src 'self', no eval) refuses.
document.addEventListener(
  "toggle",
  (e) => {
    const el = e.target;
    if (el instanceof HTMLDetailsElement && el.open && el.hasAttribute("data-load-on-open")) {
      window.htmx.trigger(el, "opened");
    }
  },
  true, // toggle does not bubble: listen on the way down
);
