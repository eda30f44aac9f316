"""The box editor's geometry, run in Chromium on static/js/boxes.js itself: what the editor
writes into the caption form is what the trainer gets, so it is checked where it runs."""

from __future__ import annotations

import random

import pytest

from app.captions import boxes
from app.captions.boxes import Box

pytestmark = pytest.mark.browser


def geometry(page, live_server: str):  # type: ignore[no-untyped-def]
    page.goto(live_server + "/")
    if not page.evaluate("() => !!window.AtelierBoxes"):
        page.add_script_tag(url="/static/js/boxes.js")
    page.wait_for_function("() => !!window.AtelierBoxes")
    return lambda js, arg=None: page.evaluate(
        f"(arg) => {{ const G = window.AtelierBoxes.Geometry; {js} }}", arg
    )


def test_a_drag_in_any_direction_is_normalised_and_clamped(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    g = geometry(page, live_server)
    # From (300, 250) to (-40, 50) on a 600 x 500 painting: up and left, past the edge.
    assert g("return G.normalise(300 / 600, 250 / 500, -40 / 600, 50 / 500);") == [
        0,
        0.1,
        0.5,
        0.5,
    ]
    assert g("return G.normalise(1.4, -0.2, 0.25, 0.75);") == [0.25, 0, 1, 0.75]


def test_moving_keeps_the_size_and_stays_inside(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    g = geometry(page, live_server)
    rnd = random.Random(7)
    cases = []
    for _ in range(200):
        x0, x1 = sorted(rnd.uniform(0, 1) for _ in range(2))
        y0, y1 = sorted(rnd.uniform(0, 1) for _ in range(2))
        cases.append([[x0, y0, x1, y1], rnd.uniform(-1.5, 1.5), rnd.uniform(-1.5, 1.5)])
    moved = g("return arg.map(([b, dx, dy]) => G.move(b, dx, dy));", cases)
    for (b, _, _), m in zip(cases, moved, strict=True):
        assert m[2] - m[0] == pytest.approx(b[2] - b[0], abs=1e-12)
        assert m[3] - m[1] == pytest.approx(b[3] - b[1], abs=1e-12)
        assert min(m) >= 0 and max(m) <= 1 + 1e-12


def test_resizing_past_the_opposite_edge_flips_and_stays_ordered(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    g = geometry(page, live_server)
    box = [0.2, 0.2, 0.6, 0.6]
    assert g("return G.resize(arg, 'e', {x: 0.1, y: 0.4});", box) == [0.1, 0.2, 0.2, 0.6]
    assert g("return G.resize(arg, 'nw', {x: 0.7, y: 0.9});", box) == [0.6, 0.6, 0.7, 0.9]
    assert g("return G.resize(arg, 's', {x: 0.5, y: 1.3});", box) == [0.2, 0.2, 0.6, 1]
    assert g("return G.handleAt(arg, {x: 0.605, y: 0.4}, 0.01, 0.01);", box) == "e"
    assert g("return G.handleAt(arg, {x: 0.4, y: 0.4}, 0.01, 0.01);", box) is None


def test_boxes_drawn_on_screen_reach_the_trainer_within_one_unit(page, live_server: str) -> None:  # type: ignore[no-untyped-def]
    # An official box shown at some on-screen size, drawn corner to corner there (in either
    # direction), written into the form by the editor and read by the server as fractions.
    g = geometry(page, live_server)
    rnd = random.Random(3)
    cases = []
    for _ in range(300):
        y0, y1 = sorted(rnd.randint(0, 1000) for _ in range(2))
        x0, x1 = sorted(rnd.randint(0, 1000) for _ in range(2))
        shown = [rnd.uniform(50, 4000), rnd.uniform(50, 4000)]
        cases.append([[y0, x0, y1, x1], shown, rnd.random() < 0.5])
    written = g(
        """return arg.map(([[y0, x0, y1, x1], [sw, sh], backwards]) => {
             const px = [x0 / 1000 * sw, y0 / 1000 * sh, x1 / 1000 * sw, y1 / 1000 * sh];
             const d = backwards ? [px[2], px[3], px[0], px[1]] : px;
             return G.format(G.normalise(d[0] / sw, d[1] / sh, d[2] / sw, d[3] / sh));
           });""",
        cases,
    )
    for (official, _, _), text in zip(cases, written, strict=True):
        back = boxes.to_official(Box(*(float(v) for v in text.split(","))))
        assert all(abs(a - b) <= 1 for a, b in zip(back, official, strict=True)), (official, text)
    assert g("return G.parse(G.format([0.1, 0.2, 0.3, 0.4]));") == [0.1, 0.2, 0.3, 0.4]
    assert g("return [G.parse('1,2,3'), G.parse('a,b,c,d'), G.parse('')];") == [None] * 3
