"""Hostile caption JSON and image files, sent over HTTP to a live server: never a 5xx.

Captions: deep nesting, huge strings, wrong types, NaN and Infinity, duplicate keys, invalid
UTF-8, every official field given junk. Images: truncated, wrong magic, decompression bombs,
CMYK, 16-bit, palette with transparency, animated. Each refusal is a 4xx with a sentence;
each acceptance stores something that reads back.
"""

from __future__ import annotations

import io
import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from app.config import Settings
from tests.hardening.conftest import seed

EXAMPLES = int(os.environ.get("ATELIER_FUZZ_EXAMPLES", 60))
RUN = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("ATELIER_FUZZ_RANDOM") != "1",
    suppress_health_check=list(HealthCheck),
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.text(min_size=5000, max_size=20000),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["high_level_description", "style_description", "compositional_deconstruction"]
STYLE = ["aesthetics", "lighting", "medium", "photo_technique", "art_style", "color_palette"]
ELEMENT = ["type", "description", "bbox", "text", "color_palette"]


def official_shaped(draw: st.DrawFn) -> dict:
    """The official caption's keys with values that are right, wrong, or absurd."""
    element = {k: draw(json_value) for k in draw(st.lists(st.sampled_from(ELEMENT), unique=True))}
    if draw(st.booleans()):
        element["bbox"] = draw(
            st.lists(st.one_of(st.integers(-5, 1005), st.floats(allow_nan=True)), max_size=5)
        )
    return {
        "high_level_description": draw(st.one_of(st.text(max_size=80), json_value)),
        "style_description": {k: draw(json_value) for k in STYLE if draw(st.booleans())},
        "compositional_deconstruction": {
            "background": draw(json_value),
            "elements": draw(st.one_of(st.just([element]), json_value)),
        },
    }


@pytest.fixture(scope="module")
def target(served: tuple[str, Settings]) -> dict:
    url, _ = served
    return {"url": url, **seed(url)}


def put(target: dict, body: bytes) -> httpx.Response:
    return httpx.put(
        f"{target['url']}/api/images/{target['image_id']}/caption",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    if r.status_code >= 400:
        assert r.json()["detail"], r.text


@pytest.mark.slow
@RUN
@given(
    caption=st.one_of(st.composite(official_shaped)(), json_value),
    dialect=st.sampled_from(["official", "guide", "nonsense"]),
)
def test_caption_json_of_any_shape_is_saved_or_refused(
    target: dict, caption: object, dialect: str
) -> None:
    current = httpx.get(f"{target['url']}/api/images/{target['image_id']}/caption").json()
    body = {"revision": current["revision"], "caption": caption, "dialect": dialect}
    r = put(target, json.dumps(body, allow_nan=True).encode())
    check(r)
    if r.status_code == 200:
        back = httpx.get(f"{target['url']}/api/images/{target['image_id']}/caption")
        assert back.status_code == 200
        json.loads(back.text)  # strict JSON: no NaN or Infinity came back out


@pytest.mark.parametrize(
    "body",
    [
        b'{"revision": 0, "caption": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"revision": 0, "caption": {"high_level_description": "\xff\xfe broken utf-8"}}',
        b'{"revision": 0, "revision": "x", "caption": {}}',
        b'{"revision": NaN, "caption": {}}',
        b'{"revision": 0, "caption": {"high_level_description": Infinity}}',
        b'{"revision": 0, "caption": "' + b"x" * 20_000_000 + b'"}',
        b"",
        b"null",
        b"\x00\x01\x02",
    ],
    ids=["deep", "bad-utf8", "dup-keys", "nan", "infinity", "20MB", "empty", "null", "binary"],
)
def test_hostile_caption_bodies_are_refused_with_a_sentence(target: dict, body: bytes) -> None:
    r = put(target, body)
    check(r)
    assert 400 <= r.status_code < 500


def image_bytes(kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "cmyk":
        Image.new("CMYK", (64, 48), (10, 200, 30, 5)).save(buf, "JPEG")
    elif kind == "16bit":
        Image.new("I;16", (64, 48), 40000).save(buf, "PNG")
    elif kind == "palette-transparent":
        im = Image.new("P", (64, 48), 1)
        im.putpalette([0, 0, 0, 255, 0, 0] * 128)
        im.save(buf, "PNG", transparency=1)
    elif kind == "animated":
        frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0))]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    elif kind == "bomb":
        # A small file that claims 40000 x 40000 pixels.
        Image.new("1", (40000, 40000)).save(buf, "PNG")
    else:
        Image.new("RGB", (64, 48), (9, 99, 199)).save(buf, "PNG")
    return buf.getvalue()


def upload(target: dict, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{target['url']}/api/datasets/{target['dataset_id']}/images",
        files=[("files", (name, data, "application/octet-stream"))],
        timeout=60,
    )


@pytest.mark.parametrize("kind", ["cmyk", "16bit", "palette-transparent", "animated"])
def test_odd_image_modes_import_and_serve(target: dict, kind: str) -> None:
    r = upload(target, f"{kind}.img", image_bytes(kind))
    check(r)
    assert r.status_code in (200, 201), r.text
    listed = httpx.get(f"{target['url']}/api/datasets/{target['dataset_id']}/images").json()
    mine = [i for i in listed if i["filename"] == f"{kind}.img"]
    assert mine, listed
    assert httpx.get(f"{target['url']}/api/images/{mine[0]['id']}/thumb").status_code == 200


@pytest.mark.slow
@RUN
@given(
    base=st.sampled_from(["plain", "cmyk", "animated", "bomb"]),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.binary(max_size=64),
    magic=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"RIFF", b"<svg"]
    ),
)
def test_broken_image_files_are_refused_or_imported_never_crash(
    target: dict, base: str, cut: int, junk: bytes, magic: bytes
) -> None:
    data = image_bytes(base)
    data = magic + data[len(magic) : max(len(magic), len(data) - cut)] + junk
    r = upload(target, "fuzz.png", data)
    check(r)
