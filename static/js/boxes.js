// The box editor over the painting: draw, select, move and resize element boxes.
// Attached to [data-box-stage]; re-attached on htmx:load. Geometry (pure functions on boxes)
// is kept apart from pointer handling, which is an explicit state machine:
// idle -> drawing | moving | resizing -> idle. Boxes live in each element's hidden input
// [data-el-box] inside the caption form ("x0,y0,x1,y1", fractions of the image, the canonical
// form of app/captions/boxes.py); the editor reports by writing that input and firing
// "change", which the form's autosave listens to.
(function () {
  "use strict";

  const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];
  const MIN_DRAG_PX = 4; // a shorter drag is a click
  const HANDLE_PX = 9;
  // Grabbing the selected box's edge anywhere along it resizes that side, even where it
  // touches a neighbour: the selected box wins within this distance of its edge.
  const EDGE_PX = 5;
  // Labels keep one screen size at every zoom: 15 px digits on a dark pill read on any painting.
  const LABEL_PX = 15;
  const LABEL_PAD_PX = 5;
  const OFFICIAL = 1000; // the official dialect's scale (app/captions/boxes.py OFFICIAL_SCALE)

  const Geometry = {
    clamp(v) {
      return Math.min(1, Math.max(0, v));
    },
    normalise(ax, ay, bx, by) {
      const c = Geometry.clamp;
      return [Math.min(c(ax), c(bx)), Math.min(c(ay), c(by)),
              Math.max(c(ax), c(bx)), Math.max(c(ay), c(by))];
    },
    parse(text) {
      if (!text) return null;
      const v = text.split(",").map(Number);
      return v.length === 4 && v.every(Number.isFinite) ? v : null;
    },
    format(b) {
      return b.map((v) => v.toFixed(6)).join(",");
    },
    // The official dialect's [y_min, x_min, y_max, x_max] in 0..1000, as boxes.py to_official.
    toOfficial(b) {
      return [b[1], b[0], b[3], b[2]].map((v) => Math.round(v * OFFICIAL));
    },
    // ... and back (boxes.py from_official): null unless four numbers make a box with an area.
    fromOfficial(v) {
      if (v.length !== 4 || !v.every(Number.isFinite)) return null;
      const b = Geometry.normalise(v[1] / OFFICIAL, v[0] / OFFICIAL, v[3] / OFFICIAL, v[2] / OFFICIAL);
      return Geometry.area(b) > 0 ? b : null;
    },
    contains(b, p) {
      return p.x >= b[0] && p.x <= b[2] && p.y >= b[1] && p.y <= b[3];
    },
    area(b) {
      return (b[2] - b[0]) * (b[3] - b[1]);
    },
    handlePoint(b, h) {
      const x = h.includes("w") ? b[0] : h.includes("e") ? b[2] : (b[0] + b[2]) / 2;
      const y = h.includes("n") ? b[1] : h.includes("s") ? b[3] : (b[1] + b[3]) / 2;
      return [x, y];
    },
    handleAt(b, p, tx, ty) {
      for (const h of HANDLES) {
        const [hx, hy] = Geometry.handlePoint(b, h);
        if (Math.abs(p.x - hx) <= tx && Math.abs(p.y - hy) <= ty) return h;
      }
      return null;
    },
    // The side (or corner) of b whose edge is within (tx, ty) of p: "n", "se", ...; or null.
    edgeAt(b, p, tx, ty) {
      if (p.x < b[0] - tx || p.x > b[2] + tx || p.y < b[1] - ty || p.y > b[3] + ty) return null;
      const v = Math.abs(p.y - b[1]) <= ty ? "n" : Math.abs(p.y - b[3]) <= ty ? "s" : "";
      const h = Math.abs(p.x - b[0]) <= tx ? "w" : Math.abs(p.x - b[2]) <= tx ? "e" : "";
      return v + h || null;
    },
    // Moves a box by (dx, dy) without changing its size or leaving the image.
    move(b, dx, dy) {
      const w = b[2] - b[0], h = b[3] - b[1];
      const x0 = Math.min(1 - w, Math.max(0, b[0] + dx));
      const y0 = Math.min(1 - h, Math.max(0, b[1] + dy));
      return [x0, y0, x0 + w, y0 + h];
    },
    resize(b, handle, p) {
      let [x0, y0, x1, y1] = b;
      if (handle.includes("w")) x0 = p.x;
      if (handle.includes("e")) x1 = p.x;
      if (handle.includes("n")) y0 = p.y;
      if (handle.includes("s")) y1 = p.y;
      return Geometry.normalise(x0, y0, x1, y1);
    },
  };

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  class BoxEditor {
    constructor(stage, form) {
      this.stage = stage;
      this.form = form;
      this.svg = stage.querySelector("[data-box-svg]");
      this.W = Number(stage.dataset.width);
      this.H = Number(stage.dataset.height);
      this.alt = JSON.parse(stage.dataset.altBoxes || "[]");
      this.state = "idle";
      this.selected = null; // the element <li> whose box is selected
      this.armed = null; // null, or the <li> (or "new") the next drag draws a box for
      this.drag = null;
      this.hidden = stage.classList.contains("boxes-hidden");
      this.numbers = document.querySelector("[data-box-numbers]");
      if (this.numbers) {
        for (const input of this.numbers.querySelectorAll("[data-box-coord]")) {
          input.addEventListener("input", () => this.fromNumbers());
        }
      }
      this.svg.addEventListener("pointerdown", (e) => this.onDown(e));
      this.svg.addEventListener("pointermove", (e) => this.onMove(e));
      this.svg.addEventListener("pointerup", (e) => this.onUp(e));
      this.svg.addEventListener("pointercancel", () => this.cancel());
      form.addEventListener("focusin", (e) => {
        const li = e.target.closest("[data-element]");
        if (li) this.select(li, { scroll: false });
      });
      new ResizeObserver(() => this.render()).observe(stage);
      this.render();
    }

    rows() {
      return [...this.form.querySelectorAll("[data-elements] > [data-element]")];
    }

    boxOf(li) {
      return Geometry.parse(li.querySelector("[data-el-box]").value);
    }

    setBox(li, box) {
      const input = li.querySelector("[data-el-box]");
      input.value = box ? Geometry.format(box) : "";
      li.querySelector("[data-box-state]").textContent = box ? "boxed" : "no box";
      input.dispatchEvent(new Event("change", { bubbles: true }));
      this.render();
    }

    point(ev) {
      const r = this.svg.getBoundingClientRect();
      return { x: Geometry.clamp((ev.clientX - r.left) / r.width),
               y: Geometry.clamp((ev.clientY - r.top) / r.height) };
    }

    // Tolerances in box units for a distance in screen pixels.
    tolerance(px) {
      const r = this.svg.getBoundingClientRect();
      return [px / r.width, px / r.height];
    }

    // The smallest box under the point, so a box inside another stays reachable.
    hit(p) {
      let best = null, bestArea = Infinity;
      for (const li of this.rows()) {
        const b = this.boxOf(li);
        if (b && Geometry.contains(b, p) && Geometry.area(b) < bestArea) {
          best = li;
          bestArea = Geometry.area(b);
        }
      }
      return best;
    }

    select(li, { scroll = true } = {}) {
      if (this.selected === li) return;
      for (const row of this.rows()) row.classList.toggle("selected", row === li);
      this.selected = li;
      if (li && scroll) li.scrollIntoView({ block: "nearest" });
      this.render();
    }

    arm(target) {
      this.armed = target;
      this.stage.classList.toggle("armed", !!target);
    }

    onDown(ev) {
      if (ev.button !== 0 || this.state !== "idle") return;
      const p = this.point(ev);
      const [tx, ty] = this.tolerance(HANDLE_PX);
      const sel = this.selected && this.boxOf(this.selected);
      const [ex, ey] = this.tolerance(EDGE_PX);
      const handle = !this.armed && sel ? Geometry.handleAt(sel, p, tx, ty) || Geometry.edgeAt(sel, p, ex, ey) : null;
      const hit = !this.armed && !handle ? this.hit(p) : null;
      if (handle) {
        this.state = "resizing";
        this.drag = { li: this.selected, start: p, original: sel, box: sel, handle };
      } else if (hit) {
        this.select(hit);
        const b = this.boxOf(hit);
        this.state = "moving";
        this.drag = { li: hit, start: p, original: b, box: b };
      } else {
        this.state = "drawing";
        this.drag = { li: null, start: p, box: [p.x, p.y, p.x, p.y], screen: [ev.clientX, ev.clientY] };
      }
      this.svg.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    }

    onMove(ev) {
      if (this.state === "idle") return;
      const p = this.point(ev);
      const d = this.drag;
      if (this.state === "drawing") d.box = Geometry.normalise(d.start.x, d.start.y, p.x, p.y);
      else if (this.state === "moving") d.box = Geometry.move(d.original, p.x - d.start.x, p.y - d.start.y);
      else d.box = Geometry.resize(d.original, d.handle, p);
      this.render();
    }

    onUp(ev) {
      if (this.state === "idle") return;
      const state = this.state, d = this.drag;
      this.state = "idle";
      this.drag = null;
      if (state === "drawing") {
        const moved = Math.hypot(ev.clientX - d.screen[0], ev.clientY - d.screen[1]);
        if (moved < MIN_DRAG_PX || Geometry.area(d.box) === 0) {
          if (!this.armed) this.select(null);
          this.render();
          return;
        }
        const target = this.armed instanceof Element ? this.armed : null;
        this.arm(null);
        if (target) {
          this.select(target);
          this.setBox(target, d.box);
        } else {
          this.form.dispatchEvent(new CustomEvent("box:new", { detail: { box: d.box } }));
        }
        return;
      }
      if (d.box.join() !== d.original.join()) this.setBox(d.li, d.box);
      else this.render();
    }

    // Esc: a drag in progress goes back to where it started.
    cancel() {
      const busy = this.state !== "idle" || this.armed;
      this.state = "idle";
      this.drag = null;
      this.arm(null);
      this.render();
      return busy;
    }

    // Hides the boxes to judge the painting alone; drawing waits until they are shown again.
    toggleHidden(hidden = !this.hidden) {
      this.hidden = hidden;
      this.stage.classList.toggle("boxes-hidden", hidden);
      const button = document.querySelector("[data-toggle-boxes]");
      if (button) {
        button.setAttribute("aria-pressed", String(hidden));
        button.textContent = hidden ? "show boxes" : "hide boxes";
      }
      this.render();
    }

    // The numeric inputs typed: the selected box becomes them, once they make a box.
    fromNumbers() {
      const li = this.selected;
      if (!li || !this.numbers) return;
      const inputs = [...this.numbers.querySelectorAll("[data-box-coord]")];
      const values = inputs.map((i) => (i.value.trim() === "" ? NaN : Number(i.value)));
      const inRange = values.every((v) => Number.isInteger(v) && v >= 0 && v <= OFFICIAL);
      const box = inRange ? Geometry.fromOfficial(values) : null;
      const ordered = box && values[0] < values[2] && values[1] < values[3];
      for (const i of inputs) i.toggleAttribute("aria-invalid", !ordered);
      this.numbers.dataset.invalid = ordered ? "" : "y_min and x_min must be below y_max and x_max, all 0..1000";
      if (ordered) this.setBox(li, box);
    }

    // The inputs show the selected box; the one being typed in is left as typed.
    showNumbers() {
      if (!this.numbers) return;
      const li = this.selected;
      const b = li && (this.drag && this.drag.li === li ? this.drag.box : this.boxOf(li));
      const values = b ? Geometry.toOfficial(b) : null;
      const inputs = [...this.numbers.querySelectorAll("[data-box-coord]")];
      inputs.forEach((input, k) => {
        input.disabled = !li;
        if (document.activeElement !== input) {
          input.value = values ? String(values[k]) : "";
          input.removeAttribute("aria-invalid");
        }
      });
      const of = this.numbers.querySelector("[data-box-numbers-of]");
      if (of) {
        const n = li ? this.rows().indexOf(li) + 1 : 0;
        of.textContent = !li ? "(none selected)" : b ? `of element ${n}` : `of element ${n}: none yet, type one`;
      }
    }

    nudge(dx, dy) {
      const b = this.selected && this.boxOf(this.selected);
      if (b) this.setBox(this.selected, Geometry.move(b, dx, dy));
    }

    // A number on a pill at a box's top-left corner, inside the box, one screen size at any zoom.
    label(text, b, cls, scale) {
      const font = LABEL_PX * scale, pad = LABEL_PAD_PX * scale;
      const x = b[0] * this.W + 2 * scale, y = b[1] * this.H + 2 * scale;
      // Digits are about 0.62 em wide in the UI's bold sans; the pill fits them with padding.
      const width = text.length * 0.62 * font + 2 * pad, height = font + pad;
      const g = svgEl("g", { class: "label " + cls });
      g.appendChild(svgEl("rect", { x, y, width, height, rx: height / 2, class: "pill" }));
      const t = svgEl("text", { x: x + width / 2, y: y + height / 2, "font-size": font,
                                "text-anchor": "middle", "dominant-baseline": "central" });
      t.textContent = text;
      g.appendChild(t);
      return g;
    }

    render() {
      const svg = this.svg;
      while (svg.firstChild) svg.firstChild.remove();
      const W = this.W, H = this.H;
      const rect = (b, cls) => svgEl("rect", {
        x: b[0] * W, y: b[1] * H, width: (b[2] - b[0]) * W, height: (b[3] - b[1]) * H, class: cls,
      });
      this.showNumbers();
      if (this.hidden) {
        if (this.state === "drawing" && this.drag) svg.appendChild(rect(this.drag.box, "drawing"));
        return;
      }
      const r = svg.getBoundingClientRect();
      const scale = r.width ? this.W / r.width : 1; // image px per screen px
      // The other reading of ambiguous imported boxes, numbered as the elements they would be.
      this.alt.forEach((b, i) => {
        const g = svgEl("g", { class: "alt-box", "data-alt-index": i });
        g.appendChild(rect(b, "alt"));
        g.appendChild(this.label(String(i + 1), b, "alt-label", scale));
        svg.appendChild(g);
      });
      this.rows().forEach((li, i) => {
        const dragging = this.drag && this.drag.li === li;
        const b = dragging ? this.drag.box : this.boxOf(li);
        if (!b) return;
        const selected = li === this.selected;
        const kind = li.dataset.type === "text" ? "kind-text" : "kind-obj";
        // doubts.js marks an element whose box the drafting model was unsure of.
        const unsure = li.dataset.unsureBox ? " unsure-box" : "";
        const g = svgEl("g", { class: `box ${kind}` + (selected ? " selected" : "") + unsure, "data-index": i });
        if (unsure) g.appendChild(svgEl("title", {})).textContent = li.dataset.unsureBox;
        g.appendChild(rect(b, "frame"));
        g.appendChild(this.label(String(i + 1), b, "box-label", scale));
        if (selected) {
          for (const h of HANDLES) {
            const [hx, hy] = Geometry.handlePoint(b, h);
            const s = HANDLE_PX * scale;
            g.appendChild(svgEl("rect", { x: hx * W - s / 2, y: hy * H - s / 2, width: s, height: s,
                                          class: "handle handle-" + h, "data-handle": h }));
          }
        }
        svg.appendChild(g);
      });
      if (this.state === "drawing" && this.drag) svg.appendChild(rect(this.drag.box, "drawing"));
    }
  }

  function init(root) {
    for (const stage of root.querySelectorAll("[data-box-stage]")) {
      if (stage.boxEditor) continue;
      const form = document.querySelector("[data-caption-form]");
      if (form) stage.boxEditor = new BoxEditor(stage, form);
    }
  }

  window.AtelierBoxes = { Geometry, BoxEditor };
  document.addEventListener("htmx:load", (e) => init(e.target));
  if (document.readyState !== "loading") init(document);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
