"""Export: the trainer's layout, captions and YAML; refusals; safety; round trip; zip; lint."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from ruamel.yaml import YAML
from sqlmodel import Session

from app import datasets as ds
from app.errors import Invalid
from app.export import profiles
from app.export.writer import ExportOptions, ExportRefused, export_dataset
from tests import imagefiles as f

CAPTION: dict[str, Any] = {
    "high_level_description": "A scholar reads by candlelight, 'VANITAS' carved below.",
    "style_description": {
        "aesthetics": "Italian Baroque, tenebrist",
        "lighting": "one candle, deep shadow",
        "medium": "painting",
        "art_style": "oil on canvas",
        "color_palette": ["#13100C", "#C8956A"],
    },
    "compositional_deconstruction": {
        "background": "a dark study",
        "elements": [
            {
                "type": "obj",
                "bbox": [100, 200, 700, 600],
                "desc": "the scholar",
                "color_palette": [],
            },
            {
                "type": "text",
                "bbox": [800, 100, 900, 400],
                "text": "VANITAS",
                "desc": "carved letters",
                "color_palette": [],
            },
        ],
    },
}


def png_bytes(seed: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    f.picture(seed, size).save(buf, "PNG")
    return buf.getvalue()


def make_dataset(client: TestClient, *, captioned: bool = True) -> tuple[int, list[int]]:
    dataset_id = client.post(
        "/api/datasets", json={"name": "Baroque Chiaroscuro", "trigger_word": "bcs style"}
    ).json()["id"]
    files = [
        ("files", ("a.jpg", f.jpeg_bytes(1, (1200, 900)), "image/jpeg")),
        ("files", ("b.png", png_bytes(2, (800, 600)), "image/png")),
        ("files", ("c.jpg", f.jpeg_bytes(3, (900, 1200)), "image/jpeg")),
    ]
    ids = [
        o["image_id"]
        for o in client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    ]
    for n, iid in enumerate(ids):
        if captioned or n < 2:
            cap = json.loads(json.dumps(CAPTION))
            cap["high_level_description"] += f" ({n})"
            r = client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": cap})
            assert r.status_code == 200, r.text
            client.post(f"/api/images/{iid}/status", json={"status": "approved"})
    return dataset_id, ids


def export(client: TestClient, dataset_id: int, out: Path, **kw: Any):  # type: ignore[no-untyped-def]
    app = client.app
    as_zip = kw.pop("as_zip", False)
    with Session(app.state.db) as session:  # type: ignore[attr-defined]
        return export_dataset(
            session,
            settings=app.state.settings,  # type: ignore[attr-defined]
            store=app.state.store,  # type: ignore[attr-defined]
            dataset=ds.get_dataset(session, dataset_id),
            out_dir=out,
            options=ExportOptions(**kw),
            as_zip=as_zip,
        )


def test_layout_captions_manifest_and_yaml(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client)
    out = tmp_path / "ai-toolkit"
    report = export(client, dataset_id, out)
    folder = out / "datasets" / "baroque_chiaroscuro"
    assert report.dataset_dir == folder.resolve()
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"00{n}.{ext}" for n in (1, 2, 3) for ext in ("json", "png")] + [
        "atelier-manifest.json"
    ]
    text = (folder / "001.json").read_text()
    assert text.startswith('{"high_level_description":')  # the trainer normalises only '{...'
    assert '"style_description":{"aesthetics":"' in text  # compact separators
    cap = json.loads(text)
    assert cap["style_description"]["aesthetics"] == "[trigger], Italian Baroque, tenebrist"
    assert list(cap["style_description"]) == [
        "aesthetics", "lighting", "medium", "art_style", "color_palette",
    ]  # fmt: skip
    assert cap["compositional_deconstruction"]["elements"][1]["bbox"] == [800, 100, 900, 400]
    with PILImage.open(folder / "001.png") as im:
        assert (im.format, im.size, im.mode) == ("PNG", (1200, 900), "RGB")
    manifest = json.loads((folder / "atelier-manifest.json").read_text())
    entry = manifest["images"][1]
    assert entry["copied"] is True  # the PNG source needed no change: byte for byte
    assert hashlib.sha256((folder / "002.png").read_bytes()).hexdigest() == entry["source_sha256"]
    assert entry["json_sha256"] == hashlib.sha256((folder / "002.json").read_bytes()).hexdigest()
    assert report.copied == 1 and report.images == 3

    config = out / "config" / "baroque_chiaroscuro.yaml"
    doc = YAML(typ="safe").load(config.read_text())
    process = doc["config"]["process"][0]
    assert process["trigger_word"] == "bcs style"
    assert process["datasets"][0]["folder_path"] == str(folder.resolve())
    assert process["datasets"][0]["caption_ext"] == "json"
    assert process["model"]["arch"] == "ideogram4"


def test_lint_errors_refuse_unless_forced(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client, captioned=False)
    with pytest.raises(ExportRefused) as e:
        export(client, dataset_id, tmp_path / "out")
    assert "c.jpg: has no caption" in e.value.message
    assert not (tmp_path / "out" / "datasets").exists()
    report = export(client, dataset_id, tmp_path / "out", force=True)
    assert report.images == 2 and report.skipped == ["c.jpg"]
    r = subprocess.run(
        [sys.executable, "-m", "app", "lint", "--dataset", "Baroque Chiaroscuro", "--json",
         "--data-dir", str(client.app.state.settings.data_dir)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    findings = json.loads(r.stdout)
    assert {"severity": "error", "code": "missing_caption", "image": "c.jpg"}.items() <= findings[
        [x["code"] for x in findings].index("missing_caption")
    ].items()
    assert any(x["code"] == "few_images" for x in findings)


def test_trigger_word_in_caption_is_an_error(client: TestClient, tmp_path: Path) -> None:
    dataset_id, ids = make_dataset(client)
    cap = json.loads(json.dumps(CAPTION))
    cap["high_level_description"] = "A painting in BCS Style."
    client.put(f"/api/images/{ids[0]}/caption", json={"revision": 1, "caption": cap})
    with pytest.raises(ExportRefused, match="trigger word 'bcs style' is written"):
        export(client, dataset_id, tmp_path / "out")


def test_round_trip_gives_back_the_same_captions(client: TestClient, tmp_path: Path) -> None:
    dataset_id, ids = make_dataset(client)
    out = tmp_path / "out"
    export(client, dataset_id, out)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    r = subprocess.run(
        [sys.executable, "-m", "app", "import", str(out / "datasets" / "baroque_chiaroscuro"),
         "--dataset", "Again", "--create", "--bbox-format", "official",
         "--data-dir", str(settings.data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    again = next(d for d in client.get("/api/datasets").json() if d["name"] == "Again")
    assert again["image_count"] == 3
    copies = client.get(f"/api/datasets/{again['id']}/images").json()
    for original, copy in zip(ids, copies, strict=True):
        a = client.get(f"/api/images/{original}/caption").json()["caption"]
        b = client.get(f"/api/images/{copy['id']}/caption").json()["caption"]
        assert a == b


def test_foreign_folder_refused_and_untouched(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client)
    foreign = tmp_path / "out" / "datasets" / "baroque_chiaroscuro"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(Invalid, match="was not written by Atelier"):
        export(client, dataset_id, tmp_path / "out")
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]
    config = tmp_path / "out2" / "config" / "baroque_chiaroscuro.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("job: mine\n")
    with pytest.raises(Invalid, match="was not written by Atelier"):
        export(client, dataset_id, tmp_path / "out2")
    assert config.read_text() == "job: mine\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(Invalid, match="is a file"):
        export(client, dataset_id, tmp_path / "file")


def exported_once(client: TestClient, tmp_path: Path) -> tuple[int, list[int], Path, Path]:
    """The sample dataset exported under tmp_path/out: its id, image ids, out and folder."""
    dataset_id, ids = make_dataset(client)
    out = tmp_path / "out"
    export(client, dataset_id, out)
    return dataset_id, ids, out, out / "datasets" / "baroque_chiaroscuro"


def test_reexport_replaces_its_files_and_keeps_the_trainer_s(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id, ids, out, folder = exported_once(client, tmp_path)
    (folder / "_latent_cache").mkdir()
    (folder / "_latent_cache" / "001.safetensors").write_bytes(b"cache")
    client.delete(f"/api/images/{ids[2]}")
    report = export(client, dataset_id, out)
    assert report.kept == ["_latent_cache"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "001.json",
        "001.png",
        "002.json",
        "002.png",
        "_latent_cache",
        "atelier-manifest.json",
    ]
    assert not list((out / "datasets").glob(".atelier-*"))


def test_a_crash_mid_export_leaves_the_previous_one(client: TestClient, tmp_path: Path) -> None:
    dataset_id, ids, out, folder = exported_once(client, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # The third image's stored file vanishes: the export is refused, naming it.
    sha = client.get(f"/api/images/{ids[2]}").json()["sha256"]
    blob = client.app.state.store.blob_path(sha)  # type: ignore[attr-defined]
    blob.unlink()
    with pytest.raises(Invalid, match="is missing from the data folder"):
        export(client, dataset_id, out)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A stored file that went bad fails the export part-way through.
    blob.write_bytes(b"not the image any more")
    with pytest.raises(Exception):  # noqa: B017 - whatever the decoder raises
        export(client, dataset_id, out)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not list(out.glob(".atelier-export-*"))


def test_crash_states_of_a_swap_are_recovered_never_shown_half(
    client: TestClient, tmp_path: Path
) -> None:
    # The states a SIGKILL can leave inside the swap (bench/crash.py found the second one).
    dataset_id, _, out, folder = exported_once(client, tmp_path)
    complete = {p.name: p.read_bytes() for p in folder.iterdir()}
    # 1. Killed between the two renames: the previous export is aside, none in place.
    aside = out / "datasets" / ".atelier-old-baroque_chiaroscuro-aaaa0001"
    folder.rename(aside)
    export(client, dataset_id, out)  # put back, then replaced as usual
    assert {p.name for p in folder.iterdir()} == set(complete)
    assert not list((out / "datasets").glob(".atelier-old-*"))
    # 2. Killed while clearing the set-aside folder, then again between the renames of a
    # later export: the part-cleared folder must not come back as the export.
    shutil.copytree(folder, aside)
    (aside / "001.png").unlink()
    (aside / "001.json").unlink()
    folder.rename(out / "datasets" / ".atelier-old-baroque_chiaroscuro-aaaa0002")
    export(client, dataset_id, out)
    assert {p.name: p.read_bytes() for p in folder.iterdir()}.keys() == complete.keys()
    assert (folder / "001.png").is_file()
    # Both set-aside folders are cleared once an export is in place again.
    export(client, dataset_id, out)
    assert not list((out / "datasets").glob(".atelier-old-*"))


def test_zip_and_guide_dialect(client: TestClient, tmp_path: Path) -> None:
    dataset_id, _ = make_dataset(client)
    with pytest.raises(ExportRefused, match="reads every bbox as 0..1000"):
        export(client, dataset_id, tmp_path / "z", as_zip=True, dialect="guide")
    report = export(client, dataset_id, tmp_path / "z", as_zip=True, dialect="guide", force=True)
    with zipfile.ZipFile(report.zip_path) as zf:
        names = zf.namelist()
        assert "config/baroque_chiaroscuro.yaml" in names
        assert "datasets/baroque_chiaroscuro/003.png" in names
        cap = json.loads(zf.read("datasets/baroque_chiaroscuro/001.json"))
        zf_yaml = zf.read("config/baroque_chiaroscuro.yaml").decode()
        doc = YAML(typ="safe").load(zf_yaml)
    # Guide dialect: pixel [x1, y1, x2, y2] of the exported 1200x900 image.
    assert cap["compositional_deconstruction"]["elements"][0]["bbox"] == [240, 90, 720, 630]
    assert (
        doc["config"]["process"][0]["datasets"][0]["folder_path"] == "datasets/baroque_chiaroscuro"
    )
    # Forced, the YAML says why its boxes are misplaced.
    header = zf_yaml.split("\njob:")[0]
    assert "Forced: the captions are in the guide's dialect" in header


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_every_profile_is_a_config_the_trainer_reads(name: str) -> None:
    from app.captions.schema import Style
    from app.export import config_yaml

    style = Style(aesthetics="Baroque", medium="painting", render="oil on canvas")

    def written(profile: str) -> config_yaml.Written:
        return config_yaml.write(
            slug="x", resolution=1024, trigger_word="t", style=style, captions=[],
            sizes=[(1000, 1000)] * 30, folder_path="/d/x", profile=profile,
            placement="aesthetics",
        )  # fmt: skip

    out = written(name)
    text = out.text
    assert text.startswith("# Written by Atelier")
    assert "shuffle_tokens" not in text and "token_dropout" not in text
    loaded = YAML(typ="safe").load(text)
    process = loaded["config"]["process"][0]
    train = process["train"]
    assert train["cache_text_embeddings"] is True and train["unload_text_encoder"] is False
    assert len(process["sample"]["samples"]) == 7 * 3 * 3
    assert {s["network_multiplier"] for s in process["sample"]["samples"]} == {0.5, 0.75, 1.0}
    prompt = json.loads(process["sample"]["samples"][0]["prompt"])
    assert prompt["style_description"]["aesthetics"].startswith("[trigger], ")
    # Every change from the guide's config says why, on its own line, and nothing else differs.
    base = YAML(typ="safe").load(written("24gb").text)["config"]["process"][0]
    for change in out.plan.changes:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{change.path[-1]}:"))
        assert "#" in line, line
    for section in ("network", "save", "train", "model", "sample"):
        for key, value in process[section].items():
            if key not in ("samples", "qtype", "qtype_te") and base[section].get(key) != value:
                assert out.plan.change(section, key) or out.plan.change(section, key, "ema_decay")
    assert out.plan.memory_gb < profiles.get_profile(name).gpu_gb


def test_profile_for_gpu() -> None:
    assert profiles.profile_for_gpu(11.6) == "12gb"
    assert profiles.profile_for_gpu(23.5) == "24gb"
    assert profiles.profile_for_gpu(79.2) == "80gb"
    assert profiles.profile_for_gpu(95.6) == "96gb"


def test_export_page_lints_shows_overview_and_exports(client: TestClient, tmp_path: Path) -> None:
    from bs4 import BeautifulSoup

    dataset_id, _ = make_dataset(client, captioned=False)
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    assert "missing_caption" in page.select_one("[data-lint]").text  # type: ignore[union-attr]
    assert len(page.select(".palette-strips .strip")) == 2
    assert page.select_one("select[name=profile] option[selected]")["value"] in profiles.PROFILES  # type: ignore[index]
    out = tmp_path / "aitk"
    r = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": str(out)})
    assert r.status_code == 422 and "stop the export" in r.text
    r = client.post(f"/datasets/{dataset_id}/export", data={"out_dir": str(out), "force": "true"})
    assert r.status_code == 200 and "Exported 2 images" in r.text
    r = client.post(
        f"/datasets/{dataset_id}/export", data={"action": "zip", "force": "true", "profile": "96gb"}
    )
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "config/baroque_chiaroscuro.yaml" in zf.namelist()
    api = client.post(
        f"/api/datasets/{dataset_id}/export",
        json={"out_dir": str(tmp_path / "api"), "force": True, "profile": "12gb"},
    )
    assert api.status_code == 200 and api.json()["images"] == 2
    refused = client.post(
        f"/api/datasets/{dataset_id}/export", json={"out_dir": str(tmp_path / "x")}
    )
    assert refused.status_code == 422
    assert any(f["code"] == "missing_caption" for f in refused.json()["findings"])
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert {"error", "warning"} == {f["severity"] for f in lint}


def test_conversion_applies_orientation_and_flattens_alpha(
    client: TestClient, tmp_path: Path
) -> None:
    rotated = f.rotated_exif_jpeg(tmp_path / "r.jpg", 7)
    rgba = PILImage.new("RGBA", (600, 400), (255, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    dataset_id = client.post("/api/datasets", json={"name": "Odd", "trigger_word": "odd"}).json()[
        "id"
    ]
    files = [
        ("files", ("r.jpg", rotated.read_bytes(), "image/jpeg")),
        ("files", ("t.png", buf.getvalue(), "image/png")),
    ]
    ids = [
        o["image_id"]
        for o in client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    ]
    for iid in ids:
        client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": CAPTION})
    shown = client.get(f"/api/images/{ids[0]}").json()
    out = tmp_path / "out"
    export(client, dataset_id, out, force=True)
    folder = out / "datasets" / "odd"
    with PILImage.open(folder / "001.png") as im:
        assert im.size == (shown["width"], shown["height"])  # as displayed, EXIF applied
    with PILImage.open(folder / "002.png") as im:
        assert im.mode == "RGB" and im.getpixel((10, 10)) == (255, 255, 255)
    export(client, dataset_id, tmp_path / "alpha", force=True, keep_alpha=True)
    with PILImage.open(tmp_path / "alpha" / "datasets" / "odd" / "002.png") as im:
        assert im.mode == "RGBA"


def test_long_caption_warned(client: TestClient) -> None:
    from app.export.lint import TOKEN_BUDGET, count_tokens

    dataset_id, ids = make_dataset(client)
    cap = json.loads(json.dumps(CAPTION))
    cap["compositional_deconstruction"]["elements"] = [
        {"type": "obj", "desc": "a figure in a long crimson cloak " * 12, "color_palette": []}
    ] * 40
    client.put(f"/api/images/{ids[0]}/caption", json={"revision": 1, "caption": cap})
    tokens, _ = count_tokens(json.dumps(cap))
    assert tokens > TOKEN_BUDGET
    codes = [f["code"] for f in client.get(f"/api/datasets/{dataset_id}/lint").json()]
    assert "caption_too_long" in codes


def test_tokens_counted_with_the_cached_text_encoder_tokenizer(tmp_path: Path) -> None:
    from tests.support.random_model import tokenizer

    # A Hugging Face cache holding a tokenizer.json for the trainer's text encoder (here the
    # byte-level one of the tiny test model: one token per byte).
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    tokenizer().backend_tokenizer.save(str(snapshot / "tokenizer.json"))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    code = 'from app.export.lint import count_tokens; print(count_tokens(\'{"a": "bc"}\'))'
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert run.stdout.strip() == "(11, True)", run.stderr
    empty = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "none")},
    )
    assert empty.stdout.strip() == "(3, False)", empty.stderr
