"""The three-way merge of two edits of one caption, from the revision both started from."""

from __future__ import annotations

from app.captions import diff
from app.captions.boxes import Box
from app.captions.schema import Caption, Composition, Element, Style


def el(eid: str, desc: str, **kw) -> Element:  # type: ignore[no-untyped-def]
    return Element(id=eid, desc=desc, box=Box(0.1, 0.1, 0.5, 0.5), **kw)


BASE = Caption(
    high_level_description="A scholar reads.",
    style=Style(aesthetics="Baroque", lighting="candle", medium="painting"),
    composition=Composition(
        background="a dark study", elements=[el("a", "the scholar"), el("b", "a skull")]
    ),
)


def edit(c: Caption, **top) -> Caption:  # type: ignore[no-untyped-def]
    style = top.pop("style", {})
    comp = top.pop("composition", {})
    return c.model_copy(
        update={
            **top,
            "style": c.style.model_copy(update=style),
            "composition": c.composition.model_copy(update=comp),
        }
    )


def descs(c: Caption) -> list[str]:
    return [e.desc for e in c.composition.elements]


def test_fields_changed_on_one_side_are_taken_without_asking() -> None:
    mine = edit(BASE, high_level_description="A scholar reads, mine.")
    theirs = edit(BASE, style={"lighting": "moonlight"}, composition={"background": "a cell"})
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert m.conflicts == []
    assert m.caption.high_level_description == "A scholar reads, mine."
    assert m.caption.style.lighting == "moonlight"
    assert m.caption.composition.background == "a cell"
    assert m.from_mine == ["high-level description"]
    assert m.from_theirs == ["style · lighting", "background"]


def test_same_field_changed_differently_is_the_only_conflict() -> None:
    mine = edit(BASE, high_level_description="mine", composition={"background": "same"})
    theirs = edit(BASE, high_level_description="theirs", composition={"background": "same"})
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert [(p.key, p.base, p.mine, p.theirs) for p in m.conflicts] == [
        ("high_level_description", "A scholar reads.", "mine", "theirs")
    ]
    assert m.caption.high_level_description == "theirs"  # undecided: theirs stays
    kept = diff.merge3(
        base=BASE, mine=mine, theirs=theirs, keep_mine=frozenset({"high_level_description"})
    )
    assert kept.caption.high_level_description == "mine"
    assert kept.caption.composition.background == "same"


def test_elements_merge_field_by_field_by_identity() -> None:
    a, b = BASE.composition.elements
    # Mine edits the skull's description; theirs moves the scholar to the end and changes
    # the skull's palette: no conflict, each edit lands on the same element.
    mine = edit(BASE, composition={"elements": [a, b.model_copy(update={"desc": "a skull, lit"})]})
    theirs = edit(
        BASE, composition={"elements": [b.model_copy(update={"color_palette": ["#FFFFFF"]}), a]}
    )
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert m.conflicts == []
    assert descs(m.caption) == ["a skull, lit", "the scholar"]
    assert m.caption.composition.elements[0].color_palette == ["#FFFFFF"]
    assert [e.id for e in m.caption.composition.elements] == ["b", "a"]


def test_additions_on_both_sides_are_kept_and_removals_applied() -> None:
    a, b = BASE.composition.elements
    mine = edit(BASE, composition={"elements": [a, b, el("m", "my candle")]})
    theirs = edit(BASE, composition={"elements": [b, el("t", "their book")]})  # removed a
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert m.conflicts == []
    assert descs(m.caption) == ["a skull", "their book", "my candle"]


def test_removed_on_one_side_and_edited_on_the_other_is_a_conflict() -> None:
    a, b = BASE.composition.elements
    mine = edit(BASE, composition={"elements": [a.model_copy(update={"desc": "the old man"}), b]})
    theirs = edit(BASE, composition={"elements": [b]})
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert [p.key for p in m.conflicts] == ["elements.a"]
    assert m.conflicts[0].theirs == "(removed)" and "the old man" in m.conflicts[0].mine
    assert descs(m.caption) == ["a skull"]
    kept = diff.merge3(base=BASE, mine=mine, theirs=theirs, keep_mine=frozenset({"elements.a"}))
    assert descs(kept.caption) == ["the old man", "a skull"]


def test_same_element_field_edited_differently_conflicts_alone() -> None:
    a, b = BASE.composition.elements
    mine = edit(BASE, composition={"elements": [a.model_copy(update={"desc": "mine"}), b]})
    theirs = edit(
        BASE,
        composition={
            "elements": [a.model_copy(update={"desc": "theirs", "box": Box(0, 0, 1, 1)}), b]
        },
    )
    m = diff.merge3(base=BASE, mine=mine, theirs=theirs)
    assert [p.key for p in m.conflicts] == ["elements.a.desc"]
    assert m.conflicts[0].label == "element 1 · description"
    assert m.caption.composition.elements[0].box == Box(0, 0, 1, 1)  # their box, unasked


def test_both_reordering_differently_conflicts_on_the_order() -> None:
    a, b = BASE.composition.elements
    c = el("c", "a book")
    base = edit(BASE, composition={"elements": [a, b, c]})
    mine = edit(base, composition={"elements": [c, a, b]})
    theirs = edit(base, composition={"elements": [b, a, c]})
    m = diff.merge3(base=base, mine=mine, theirs=theirs)
    assert [p.key for p in m.conflicts] == [diff.ORDER]
    assert (m.conflicts[0].mine, m.conflicts[0].theirs) == ("3, 1, 2", "2, 1, 3")
    kept = diff.merge3(base=base, mine=mine, theirs=theirs, keep_mine=frozenset({diff.ORDER}))
    assert descs(kept.caption) == ["a book", "the scholar", "a skull"]


def test_elements_without_ids_are_named_after_the_base() -> None:
    """Captions from the API, the model or older revisions carry no ids."""
    base = Caption(composition=Composition(elements=[Element(desc="x"), Element(desc="y")]))
    mine = Caption(composition=Composition(elements=[Element(desc="x"), Element(desc="y, mine")]))
    theirs = Caption(
        composition=Composition(elements=[Element(desc="x, theirs"), Element(desc="y")])
    )
    m = diff.merge3(base=base, mine=mine, theirs=theirs)
    assert m.conflicts == []
    assert descs(m.caption) == ["x, theirs", "y, mine"]


def test_identify_keeps_ids_and_matches_content_then_place() -> None:
    like = Caption(composition=Composition(elements=[el("a", "one"), el("b", "two")]))
    came = Caption(
        composition=Composition(elements=[Element(desc="two", box=Box(0.1, 0.1, 0.5, 0.5)),
                                          Element(desc="changed"), Element(desc="new")])
    )  # fmt: skip
    ids = [e.id for e in diff.identify(came, like=like).composition.elements]
    assert ids[:2] == ["b", "a"] and ids[2] not in ("a", "b") and ids[2]
    # The id is Atelier's own: equality and the exported caption ignore it.
    assert el("a", "one") == el("z", "one")


def test_an_id_given_twice_never_merges_two_elements_into_one() -> None:
    twice = Caption(composition=Composition(elements=[el("a", "one"), el("a", "two")]))
    named = diff.identify(twice, like=None)
    ids = [e.id for e in named.composition.elements]
    assert ids[0] == "a" and ids[1] not in ("", "a")
    mine = edit(twice, high_level_description="mine")
    m = diff.merge3(base=twice, mine=mine, theirs=twice)
    assert descs(m.caption) == ["one", "two"]
