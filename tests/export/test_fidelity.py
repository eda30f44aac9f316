"""Export fidelity: what AI-Toolkit's loader, normaliser and config reader make of an export
(modelled in trainer_model.py) is what the user reviewed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlmodel import Session

from app.captions.dialects import to_trainer
from app.captions.schema import Caption
from app.export.caption_file import caption_text
from app.export.verifier import verify, verify_text
from app.export.writer import ExportRefused
from app.models import Dataset, Image
from tests import imagefiles as f
from tests.export import trainer_model as trainer
from tests.export.test_export import CAPTION, export, make_dataset, png_bytes

TRIGGER = "bcs style"


def caption(n: int) -> dict[str, Any]:
    """A realistic caption: commas, quotes, non-ASCII and a multi-line transcription."""
    return {
        "high_level_description": f'Père Noël, "the saint" ({n}), reading: 1,000 candles.',
        "style_description": {
            "aesthetics": "Italian Baroque, tenebrist",
            "lighting": "one candle, deep shadow",
            "medium": "painting",
            "art_style": "oil on canvas, glazed",
            "color_palette": ["#13100C", "#C8956A"],
        },
        "compositional_deconstruction": {
            "background": "a dark study, books; a window — night",
            "elements": [
                {"type": "obj", "bbox": [100, 200, 700, 600], "desc": "the scholar, old"},
                {
                    "type": "text",
                    "bbox": [800, 100, 900, 400],
                    "text": 'EXIT, NOW\n"VANITAS", 1,000\nÉTÉ',
                    "desc": "carved letters, gilt",
                    "color_palette": ["#AA8800"],
                },
            ],
        },
    }


def intended(data: dict[str, Any], trigger: str = TRIGGER) -> str:
    """The text the user means the encoder to read: the caption, trigger first in aesthetics."""
    data = json.loads(json.dumps(data))
    data["style_description"]["aesthetics"] = (
        f"{trigger}, {data['style_description']['aesthetics']}"
    )
    for el in data["compositional_deconstruction"]["elements"]:
        if not el.get("color_palette"):
            el.pop("color_palette", None)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def realistic(client: TestClient) -> tuple[int, list[int]]:
    dataset_id = client.post(
        "/api/datasets", json={"name": 'Baroque "Noël" \\ Chiaroscuro', "trigger_word": TRIGGER}
    ).json()["id"]
    rgba = PILImage.new("RGBA", (640, 480), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 320, 480))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    files = [
        ("files", ("a.jpg", f.jpeg_bytes(1, (1200, 900)), "image/jpeg")),
        ("files", ("b.png", png_bytes(2, (800, 600)), "image/png")),
        ("files", ("c.jpg", f.jpeg_bytes(3, (900, 1200)), "image/jpeg")),
        ("files", ("d.png", buf.getvalue(), "image/png")),
        ("files", ("e.jpg", f.jpeg_bytes(5, (1000, 1000)), "image/jpeg")),
    ]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    ids = [o["image_id"] for o in r.json()["imported"]]
    assert len(ids) == 5
    for n, iid in enumerate(ids):
        r = client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": caption(n)})
        assert r.status_code == 200, r.text
        client.post(f"/api/images/{iid}/status", json={"status": "approved"})
    return dataset_id, ids


def shown(html: str, selector: str, up: int = 0) -> str:
    """The text of the first element `selector` finds on a page (or of its `up`-th parent)."""
    from bs4 import BeautifulSoup

    node = BeautifulSoup(html, "html.parser").select_one(selector)
    assert node is not None, selector
    for _ in range(up):
        node = node.parent
        assert node is not None
    return node.get_text(" ", strip=True)


def read_back(folder: Path, trigger: str | None = TRIGGER) -> dict[str, str]:
    """For each exported image, the text the trainer's text encoder receives."""
    return {
        png.stem: trainer.encoder_text(trainer.loader_caption(png.with_suffix(".json"), trigger))
        for png in sorted(folder.glob("*.png"))
    }


def test_done_when_a_realistic_dataset_reaches_the_encoder_as_reviewed(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids = realistic(client)
    out = tmp_path / "aitk"
    report = export(client, dataset_id, out, keep_alpha=True)
    folder = report.dataset_dir
    assert folder is not None
    texts = read_back(folder)
    for n, (_, text) in enumerate(sorted(texts.items())):
        want = intended(caption(n))
        assert json.loads(text) == json.loads(want)
        assert text == want  # string-equal to the compact serialisation, commas exact
        assert trainer.encoder_text(text) == text  # a fixed point of the normaliser
    for png in folder.glob("*.json"):
        if png.name != "atelier-manifest.json":
            assert verify_text(png.read_text()) == []
            assert '"[trigger]\\u002c Italian Baroque\\u002c tenebrist"' in png.read_text()
    # The trainer reads the config (the dataset's name holds a quote and a backslash).
    config = trainer.read_config(out / "config" / f"{folder.name}.yaml", env={})
    assert config["config"]["name"] == folder.name == config["meta"]["name"]
    data = config["config"]["process"][0]["datasets"][0]
    assert data["alpha_mask"] is True
    for sample in config["config"]["process"][0]["sample"]["samples"]:
        prompt = trainer.sample_prompt(sample["prompt"], TRIGGER)
        assert TRIGGER in prompt and trainer.is_structured(prompt)
        assert verify(json.loads(prompt)) == []

    # The trainer caches latents; then images are deleted and reordered, and exported again.
    first = trainer.cache_latents(folder)
    assert len(first) == 5
    client.delete(f"/api/images/{ids[1]}")
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        for iid, position in zip((ids[0], ids[3], ids[2], ids[4]), (10, 20, 30, 40), strict=True):
            img = session.get(Image, iid)
            assert img is not None
            img.position = position  # now a, d, c, e
            session.add(img)
        session.commit()
    again = export(client, dataset_id, out, keep_alpha=True)
    assert trainer.stale_latents(folder) == []
    # Kept: exactly the entries whose name still holds the same image (001 a, 003 c).
    kept = {p.name for p in (folder / "_latent_cache").iterdir()}
    assert kept == {p.name for p in first if p.name[:4] in ("001_", "003_")}
    assert again.stale_cache == 3
    manifest = json.loads((folder / "atelier-manifest.json").read_text())
    order = [e["source_filename"] for e in manifest["images"]]
    texts = read_back(folder)
    for name, source in zip(sorted(texts), order, strict=True):
        n = "abcde".index(source[0])
        assert texts[name] == intended(caption(n))
    assert order == ["a.jpg", "d.png", "c.jpg", "e.jpg"]
    with PILImage.open(folder / "002.png") as im:
        assert im.mode == "RGBA"  # kept, for the alpha mask
    # Re-imported, the export gives back the captions (commas read back from \u002c).
    r = subprocess.run(
        [sys.executable, "-m", "app", "import", str(folder), "--dataset", "Again", "--create",
         "--bbox-format", "official",
         "--data-dir", str(client.app.state.settings.data_dir)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    again_id = next(d["id"] for d in client.get("/api/datasets").json() if d["name"] == "Again")
    for copy in client.get(f"/api/datasets/{again_id}/images").json():
        source = next(e for e in manifest["images"] if e["name"] == Path(copy["filename"]).stem)
        got = client.get(f"/api/images/{copy['id']}/caption").json()["caption"]
        want = caption("abcde".index(source["source_filename"][0]))
        assert (
            got["compositional_deconstruction"]["elements"][1]["text"]
            == (want["compositional_deconstruction"]["elements"][1]["text"])
        )
        assert got["high_level_description"] == want["high_level_description"]
        assert got["style_description"]["aesthetics"] == "Italian Baroque, tenebrist"


def test_commas_escaped_only_where_the_trainer_parses_json(
    client: TestClient, tmp_path: Path
) -> None:
    cap = Caption.model_validate(
        {
            "composition": {
                "background": "a wall",
                "elements": [{"type": "text", "text": "EXIT, NOW", "desc": "a sign"}],
            }
        }  # noqa: E501
    )
    for placement in ("aesthetics", "none"):
        text = caption_text(cap, dialect="official", placement=placement, width=1, height=1)
        assert "EXIT\\u002c NOW" in text and "EXIT, NOW" not in text
        assert json.loads(text)["compositional_deconstruction"]["elements"][0]["text"] == (
            "EXIT, NOW"
        )
        path = tmp_path / f"{placement}.json"
        path.write_text(text)
        received = trainer.encoder_text(
            trainer.loader_caption(path, TRIGGER if placement == "aesthetics" else None)
        )  # noqa: E501
        assert '"text":"EXIT, NOW"' in received
    # Prefixed, the caption is plain text: an escape would reach the encoder as it is.
    text = caption_text(cap, dialect="official", placement="prefix", width=1, height=1)
    assert "\\u002c" not in text and "EXIT, NOW" in text
    dataset_id, ids = make_dataset(client)
    client.put(
        f"/api/images/{ids[0]}/caption",
        json={"revision": 1, "caption": {**CAPTION, "high_level_description": "1,000 saints"}},
    )
    report = export(client, dataset_id, tmp_path / "p", trigger_placement="prefix")
    assert any(w.code == "prefix_commas" for w in report.warnings)
    got = trainer.loader_caption(report.dataset_dir / "001.json", "bcs style")  # type: ignore[operator]
    assert got.startswith("bcs style {") and "1, 000 saints" in got  # what the lint warns of
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert "prefix_commas" not in {x["code"] for x in lint}  # the default placement is exact


def test_exported_captions_are_fixed_points_of_the_normaliser(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, _ = make_dataset(client)  # its elements have empty palettes
    report = export(client, dataset_id, tmp_path / "o")
    for path in sorted(report.dataset_dir.glob("0*.json")):  # type: ignore[union-attr]
        received = trainer.encoder_text(trainer.loader_caption(path, "bcs style"))
        assert received == json.dumps(
            json.loads(path.read_text().replace("[trigger]", "bcs style")),
            ensure_ascii=False,
            separators=(",", ":"),
        )  # noqa: E501
        assert '"color_palette":[]' not in path.read_text()


def test_verifier_rules_stop_the_export_naming_image_and_rule(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids = make_dataset(client)
    no_medium = json.loads(json.dumps(CAPTION))
    del no_medium["style_description"]["medium"]
    del no_medium["style_description"]["art_style"]
    client.put(f"/api/images/{ids[1]}/caption", json={"revision": 1, "caption": no_medium})
    with pytest.raises(ExportRefused) as e:
        export(client, dataset_id, tmp_path / "v")
    assert "b.png: breaks Ideogram's caption rules" in e.value.message
    assert "photo / art_style" in e.value.message
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    codes = {(x["image"], x["code"]) for x in lint}
    assert ("b.png", "verifier_style_render") in codes
    assert ("b.png", "verifier_style_incomplete") in codes
    forced = export(client, dataset_id, tmp_path / "v", force=True)
    assert {x.code for x in forced.forced} >= {"verifier_style_render"}


def test_no_style_block_puts_the_trigger_in_the_description(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids = make_dataset(client)
    bare = {k: v for k, v in CAPTION.items() if k != "style_description"}
    client.put(f"/api/images/{ids[0]}/caption", json={"revision": 1, "caption": bare})
    report = export(client, dataset_id, tmp_path / "s")
    text = (report.dataset_dir / "001.json").read_text()  # type: ignore[operator]
    data = json.loads(text)
    assert "style_description" not in data
    assert data["high_level_description"].startswith("[trigger], A scholar reads")
    assert verify_text(text) == []
    assert any(w.code == "trigger_in_description" and w.image == "a.jpg" for w in report.warnings)
    received = trainer.encoder_text(
        trainer.loader_caption(report.dataset_dir / "001.json", "bcs style")
    )  # type: ignore[operator]  # noqa: E501
    assert json.loads(received)["high_level_description"].startswith("bcs style, A scholar")


def test_verifier_rules() -> None:
    good = to_trainer(
        Caption.model_validate(
            {
                "style": {
                    "aesthetics": "a",
                    "lighting": "b",
                    "medium": "photograph",
                    "render": "35mm",
                }
            }
        )
    )  # noqa: E501
    assert verify(good) == [v for v in verify(good) if v.severity == "warning"]
    assert list(good["style_description"]) == ["aesthetics", "lighting", "photo", "medium"]
    bad = {
        "style_description": {
            "lighting": "",
            "aesthetics": "",
            "medium": "painting",
            "art_style": "x",
            "photo": "y",
        },  # noqa: E501
        "compositional_deconstruction": {
            "elements": [
                {"type": "obj", "desc": "d", "bbox": [10, 0, 5, 1001]},
                {"type": "text", "desc": "d"},
                {"desc": "d", "type": "obj", "color_palette": ["#abcdef"] * 6},
            ],
        },
        "extra": 1,
    }
    rules = {v.rule for v in verify(bad)}
    assert rules >= {
        "top_keys", "style_render", "style_order", "background_missing", "bbox_range",
        "element_keys", "element_order", "palette",
    }  # fmt: skip
    assert [
        v.rule
        for v in verify_text(
            '{"compositional_deconstruction":{"background":"\\u00e9","elements":[{"type":"obj","desc":""}]}}'
        )
    ] == ["escaped_non_ascii"]  # noqa: E501
    assert (
        verify_text(
            '{"compositional_deconstruction":{"background":"a\\u002cb","elements":[{"type":"obj","desc":""}]}}'
        )
        == []
    )  # noqa: E501


@pytest.mark.parametrize(
    "word", ['bcs "style"', "bcs\\style", "bcs\nstyle", "[trigger]", "x[name]", "${HOME}"]
)  # noqa: E501
def test_trigger_words_that_break_json_are_refused(client: TestClient, word: str) -> None:
    r = client.post("/api/datasets", json={"name": "T", "trigger_word": word})
    assert r.status_code == 422 and "trigger word may not hold" in r.json()["detail"]
    ok = client.post("/api/datasets", json={"name": "T", "trigger_word": "fine"}).json()
    r = client.patch(f"/api/datasets/{ok['id']}", json={"trigger_word": word, "name": "Renamed"})
    assert r.status_code == 422 and "trigger word may not hold" in r.json()["detail"]
    assert client.get(f"/api/datasets/{ok['id']}").json()["name"] == "T"  # nothing changed
    page = client.post("/datasets", data={"name": "U", "trigger_word": word})
    assert page.status_code == 422 and "trigger word may not hold" in shown(page.text, "p.error")
    page = client.post(f"/datasets/{ok['id']}/settings", data={"name": "T", "trigger_word": word})
    assert page.status_code == 422 and "trigger word may not hold" in shown(page.text, "p.error")


def test_an_existing_bad_trigger_word_is_refused_at_export(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, _ = make_dataset(client)
    with Session(client.app.state.db) as session:  # type: ignore[attr-defined]
        d = session.get(Dataset, dataset_id)
        assert d is not None
        d.trigger_word = 'say "cheese"'
        session.add(d)
        session.commit()
    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(tmp_path / "x")})
    assert r.status_code == 422 and "trigger word may not hold '\"'" in r.json()["detail"]
    cli = subprocess.run(
        [sys.executable, "-m", "app", "export", "--dataset", "Baroque Chiaroscuro",
         "--out", str(tmp_path / "y"),
         "--data-dir", str(client.app.state.settings.data_dir)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "trigger word may not hold" in cli.stderr
    assert not (tmp_path / "y" / "datasets").exists()


def test_prefix_placement_puts_the_trigger_in_every_sample_prompt(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, _ = make_dataset(client)
    report = export(client, dataset_id, tmp_path / "p", trigger_placement="prefix")
    config = trainer.read_config(report.config_path, env={})  # type: ignore[arg-type]
    samples = config["config"]["process"][0]["sample"]["samples"]
    assert samples
    for s in samples:
        prompt = trainer.sample_prompt(s["prompt"], "bcs style")
        assert prompt.startswith("bcs style {")
    # Written as a prefixed training caption reads.
    train = trainer.loader_caption(report.dataset_dir / "001.json", "bcs style")  # type: ignore[operator]
    assert train.startswith("bcs style {") and ", " in train


def test_alpha_mask_only_with_kept_alpha(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client)
    flat = export(client, dataset_id, tmp_path / "a")
    kept = export(client, dataset_id, tmp_path / "b", keep_alpha=True)
    assert (
        "alpha_mask"
        not in trainer.read_config(flat.config_path, env={})["config"]["process"][0]["datasets"][0]
    )  # type: ignore[arg-type]  # noqa: E501
    assert (
        trainer.read_config(kept.config_path, env={})["config"]["process"][0]["datasets"][0][
            "alpha_mask"
        ]
        is True
    )  # type: ignore[arg-type]  # noqa: E501
    page = shown(client.get(f"/datasets/{dataset_id}/export").text, "input[name=keep_alpha]", up=1)
    assert "alpha_mask: true" in page and "not trained on" in page


def test_undecided_boxes_are_an_export_error_and_the_upload_report_says_so(
    client: TestClient, tmp_path: Path, dataset_id: int
) -> None:
    cap = {
        "compositional_deconstruction": {
            "background": "b",
            "elements": [{"type": "obj", "bbox": [10, 10, 200, 300], "desc": "x"}],
        }
    }  # noqa: E501
    files = [
        ("files", ("a.png", png_bytes(1, (600, 400)), "image/png")),
        ("files", ("a.json", json.dumps(cap).encode(), "application/json")),
    ]
    page = client.post(f"/datasets/{dataset_id}/import", files=files)
    assert page.status_code == 200
    notice = shown(page.text, "[data-undecided-boxes]")
    assert "could be 0..1000 or pixels" in notice and "export refuses them" in notice
    with pytest.raises(ExportRefused, match="could be pixels"):
        export(client, dataset_id, tmp_path / "u")
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert {"ambiguous_boxes": "error"}.items() <= {x["code"]: x["severity"] for x in lint}.items()


def test_too_long_captions_are_lint_errors_and_absurd_ones_refused(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids = make_dataset(client)
    cap = json.loads(json.dumps(CAPTION))
    cap["compositional_deconstruction"]["elements"] = [
        {"type": "obj", "desc": "a figure in a long crimson cloak " * 12}
    ] * 40
    assert (
        client.put(
            f"/api/images/{ids[0]}/caption", json={"revision": 1, "caption": cap}
        ).status_code
        == 200
    )  # noqa: E501
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert {"caption_too_long": "error"}.items() <= {x["code"]: x["severity"] for x in lint}.items()
    huge = {**CAPTION, "high_level_description": "x" * 5_000_000}
    r = client.put(f"/api/images/{ids[1]}/caption", json={"revision": 1, "caption": huge})
    assert (
        r.status_code == 422
        and "high-level description is 5,000,000 characters" in r.json()["detail"]
    )  # noqa: E501
    many = json.loads(json.dumps(CAPTION))
    many["compositional_deconstruction"]["elements"] = [{"type": "obj", "desc": "y" * 5000}] * 20
    r = client.put(f"/api/images/{ids[1]}/caption", json={"revision": 1, "caption": many})
    assert r.status_code == 422 and "over 60,000 characters" in r.json()["detail"]
    assert client.get(f"/api/images/{ids[1]}/caption").json()["revision"] == 1  # nothing stored


def test_refusal_on_the_page_says_tick_export_anyway(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client, captioned=False)
    r = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": str(tmp_path / "o")})
    assert r.status_code == 422
    assert "tick 'export anyway'" in shown(r.text, "p.error")
    assert "--force" not in r.text
    api = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(tmp_path / "o")})
    assert '"force": true' in api.json()["detail"]


def test_stale_cache_count_in_api_page_and_cli(client: TestClient, tmp_path: Path) -> None:
    dataset_id, ids = make_dataset(client)
    out = tmp_path / "aitk"
    api = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(out)}).json()
    assert api["stale_cache_dropped"] == 0
    folder = Path(api["dataset_dir"])
    trainer.cache_latents(folder)
    (folder / "_t_e_cache").mkdir()
    (folder / "_t_e_cache" / "001_AAAAAAAAAAAAAAAAAAAAAA.safetensors").write_text("by caption")
    sizes = {"__version__": "0.1.2", "/001.png": [1, 1, "x"], "/003.png": [1, 1, "y"]}
    (folder / ".aitk_size.json").write_text(json.dumps(sizes))
    client.delete(f"/api/images/{ids[0]}")  # b -> 001, c -> 002, 003 gone
    page = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": str(out)})
    assert shown(page.text, "[data-stale-cache]").startswith(
        "Removed 3 stale entries of the trainer's latent cache"
    )
    assert trainer.stale_latents(folder) == []
    assert not any((folder / "_latent_cache").iterdir())
    assert (folder / "_t_e_cache" / "001_AAAAAAAAAAAAAAAAAAAAAA.safetensors").exists()
    assert json.loads((folder / ".aitk_size.json").read_text()) == {"__version__": "0.1.2"}
    trainer.cache_latents(folder)
    cli = subprocess.run(
        [sys.executable, "-m", "app", "export", "--dataset", "Baroque Chiaroscuro",
         "--out", str(out), "--data-dir", str(client.app.state.settings.data_dir)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "stale trainer cache entries removed: 0" in cli.stdout
    assert len(list((folder / "_latent_cache").iterdir())) == 2  # same images, kept


def test_placeholders_in_captions_and_dollars_in_the_style_reach_the_trainer_intact(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids = make_dataset(client)
    style = {"aesthetics": "costs ${PRICE}", "lighting": "dim", "medium": "painting",
             "render": "oil"}  # fmt: skip
    assert client.put(f"/api/datasets/{dataset_id}/style", json=style).status_code == 200
    report = export(client, dataset_id, tmp_path / "d", force=True)
    config = trainer.read_config(report.config_path, env={})  # type: ignore[arg-type]
    prompt = trainer.sample_prompt(
        config["config"]["process"][0]["sample"]["samples"][0]["prompt"], "bcs style"
    )
    aesthetics = json.loads(trainer.encoder_text(prompt))["style_description"]["aesthetics"]
    assert aesthetics == "bcs style, costs ${PRICE}"
    cap = json.loads(json.dumps(CAPTION))
    cap["compositional_deconstruction"]["elements"][1]["text"] = "[name]"
    client.put(f"/api/images/{ids[0]}/caption", json={"revision": 1, "caption": cap})
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert {"image": "a.jpg", "code": "placeholder_in_caption", "severity": "error"}.items() <= (
        next(x for x in lint if x["code"] == "placeholder_in_caption").items()
    )
