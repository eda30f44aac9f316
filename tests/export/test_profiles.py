"""Profiles keep the guide's amount of training; sample prompts reach the trainer whole; the
guide's validation plan is the default sample set, editable on the export page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from app.export import profiles
from tests.export import trainer_model as trainer
from tests.export.test_export import export
from tests.images.test_buckets import png

# Bucket sizes of a set of paintings: mostly 4:3 and 3:4, a few squares, two odd ones.
SIZES = [(1200, 900)] * 5 + [(900, 1200)] * 4 + [(1000, 1000)] * 3 + [(1600, 800), (700, 1400)]


def element(box: list[int], desc: str, kind: str = "obj", text: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "bbox": box}
    if kind == "text":
        out["text"] = text
    return out | {"desc": desc, "color_palette": []}


def caption(hld: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "high_level_description": hld,
        "style_description": {
            "aesthetics": "Italian Baroque -- tenebrist",
            "lighting": "one hard light from the upper left",
            "medium": "painting",
            "art_style": "oil on canvas",
            "color_palette": [],
        },
        "compositional_deconstruction": {"background": "near-black ground", "elements": elements},
    }


CAPTIONS = [
    caption("A close-up portrait of a bearded man.", [element([0, 100, 1000, 900], "his face")]),
    caption(
        "A half-length figure of a woman holding a lamp.",
        [
            element([100, 150, 800, 750], "a woman, waist up"),
            element([300, 500, 500, 700], "a lamp"),
        ],
    ),
    caption(
        "Four gamblers around a table.",
        [element([200, x, 900, x + 250], f"gambler {x}") for x in (0, 250, 500, 750)],
    ),
    caption(
        "A skull on a book inscribed VANITAS.",
        [element([600, 100, 700, 500], "carved letters", "text", "VANITAS")],
    ),
    caption("A lemon.", [element([400, 400, 600, 600], "a lemon")]),
]


def make(client: TestClient, sizes: list[tuple[int, int]], trigger: str = "bcs style") -> int:
    dataset_id = client.post(
        "/api/datasets", json={"name": "Plan", "trigger_word": trigger}
    ).json()["id"]
    files = [("files", (f"{n:02d}.png", png(n, s), "image/png")) for n, s in enumerate(sizes)]
    r = client.post(f"/api/datasets/{dataset_id}/images", files=files)
    ids = sorted((o["filename"], o["image_id"]) for o in r.json()["imported"])
    for n, (_, iid) in enumerate(ids):
        cap = json.loads(json.dumps(CAPTIONS[n % len(CAPTIONS)]))
        cap["compositional_deconstruction"]["background"] += f" {n}"
        r = client.put(f"/api/images/{iid}/caption", json={"revision": 0, "caption": cap})
        assert r.status_code == 200, r.text
    return dataset_id


def run_of(config_path: Path) -> dict[str, Any]:
    return trainer.read_config(config_path, env={})["config"]["process"][0]


def images_seen(process: dict[str, Any], sizes: list[tuple[int, int]]) -> tuple[int, int, int]:
    """Images seen by the run, at each save and at each sample, as the trainer counts them:
    one batch a step, every item of it (resolution copies and repeats) counted."""
    resolutions = process["datasets"][0]["resolution"]
    batches = trainer.epoch_batches(sizes, resolutions, process["train"]["batch_size"])
    per_step = len(batches[0])
    assert all(len(b) == per_step for b in batches)
    train = process["train"]
    return (
        train["steps"] * per_step,
        process["save"]["save_every"] * per_step,
        process["sample"]["sample_every"] * per_step,
    )


def test_the_96gb_run_sees_the_images_the_guide_s_24gb_run_sees(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make(client, SIZES)
    small = run_of(export(client, dataset_id, tmp_path / "24", profile="24gb").config_path)
    big = run_of(export(client, dataset_id, tmp_path / "96", profile="96gb").config_path)
    assert small["train"]["batch_size"] == 1 and big["train"]["batch_size"] > 1
    guide, large = images_seen(small, SIZES), images_seen(big, SIZES)
    assert guide == (2500, 250, 250)
    batch = big["train"]["batch_size"]
    # Within rounding: save_every is a whole number of steps, and the run is ten saves.
    assert abs(large[0] - guide[0]) <= 10 * batch / 2
    assert abs(large[1] - guide[1]) <= batch / 2 and large[2] == large[1]
    # The learning rate and the EMA follow the batch; the rank stays the guide's.
    assert big["train"]["lr"] == pytest.approx(1e-4 * batch**0.5, rel=0.01)
    assert big["train"]["ema_config"]["ema_decay"] == pytest.approx(0.99**batch, abs=1e-4)
    assert big["network"]["linear"] == small["network"]["linear"] == 16


def test_the_plan_counts_an_epoch_as_the_trainer_builds_it() -> None:
    run = profiles.plan(profile="96gb", resolution=1024, sizes=SIZES)
    batches = trainer.epoch_batches(SIZES, run.resolutions, run.batch)
    assert run.batches_per_epoch == len(batches)
    repeats = sum(len(b) - len(set(b)) for b in batches) / sum(map(len, batches))
    assert repeats == pytest.approx(profiles.repeat_share(run.buckets, run.batch))
    assert repeats <= profiles.MAX_REPEATS
    # The card would take more; the buckets would fill it with repeats.
    assert run.memory_batch > run.batch
    more = trainer.epoch_batches(SIZES, run.resolutions, run.memory_batch)
    assert sum(len(b) - len(set(b)) for b in more) / sum(map(len, more)) > profiles.MAX_REPEATS
    why = run.change("train", "batch_size")
    training = run.profile.vram_estimate_gb(1024, run.batch)
    assert (
        why is not None
        and f"{run.batch} images a step (training at about {training} GB)" in why.why
    )
    assert run.memory_gb == max(training, run.profile.caching_gb()) == 38.3


def test_a_batch_of_mostly_short_buckets_is_linted(client: TestClient) -> None:
    # Nine squares and two odd aspects: batch 2 keeps repeats under a quarter, but two of the
    # three buckets at each resolution hold a single image.
    dataset_id = make(client, [(1000, 1000)] * 9 + [(1600, 800), (700, 1400)])
    found = client.get(f"/api/datasets/{dataset_id}/lint", params={"profile": "96gb"}).json()
    warned = [f for f in found if f["code"] == "batch_repeats"]
    assert len(warned) == 1 and "6 of the 9 buckets" in warned[0]["message"]
    assert "batch of 2" in warned[0]["message"]
    small = client.get(f"/api/datasets/{dataset_id}/lint", params={"profile": "24gb"}).json()
    assert not [f for f in small if f["code"] == "batch_repeats"]


def test_sample_prompts_holding_dashes_reach_the_trainer_whole(
    client: TestClient, tmp_path: Path
) -> None:
    trigger = "Old--Master"
    dataset_id = make(client, SIZES[:5], trigger=trigger)
    process = run_of(export(client, dataset_id, tmp_path / "a", profile="24gb").config_path)
    assert process["sample"]["samples"]
    for s in process["sample"]["samples"]:
        prompt = trainer.sample_prompt(s["prompt"], process["trigger_word"])
        assert trainer.generation_prompt(prompt) == prompt.strip()
        assert trainer.is_structured(prompt)
        style = json.loads(trainer.encoder_text(prompt))["style_description"]
        assert style["aesthetics"].startswith("Old--Master, Italian Baroque -- tenebrist")


def test_prefixed_sample_prompts_with_dashes_are_refused_with_a_sentence(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make(client, SIZES[:5], trigger="Old--Master")
    lint = client.get(f"/api/datasets/{dataset_id}/lint").json()
    assert not [f for f in lint if f["code"] == "sample_prompt_dashes"]
    r = client.post(
        f"/api/datasets/{dataset_id}/export",
        json={"out_dir": str(tmp_path / "p"), "trigger_placement": "prefix", "force": True},
    )
    assert r.status_code == 422
    assert "the trainer cuts each at '--'" in r.json()["detail"]
    page = client.post(f"/datasets/{dataset_id}/export/lint", data={"trigger_placement": "prefix"})
    text = BeautifulSoup(page.text, "html.parser").text
    assert "sample_prompt_dashes" in text and "the trigger word 'Old--Master'" in text
    # The page says why no YAML can be written, and keeps the sample set to edit.
    shown = BeautifulSoup(
        client.post(
            f"/datasets/{dataset_id}/export",
            data={"action": "preview", "trigger_placement": "prefix"},
        ).text,
        "html.parser",
    )
    error = shown.select_one("[data-plan-error]")
    assert error is not None and "cuts each at '--'" in error.text
    assert len(shown.select("[data-sample-set] textarea")) == 7


def test_the_default_sample_set_is_the_guide_s_plan_from_the_dataset_s_captions(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make(client, SIZES[:5])
    process = run_of(export(client, dataset_id, tmp_path / "d").config_path)
    samples = process["sample"]["samples"]
    assert len(samples) == 7 * 3 * 3
    assert {s["seed"] for s in samples} == {42, 43, 44}
    assert {s["network_multiplier"] for s in samples} == {0.5, 0.75, 1.0}
    assert process["train"]["skip_first_sample"] is False  # step 0: the LoRA-off reference
    described = {
        json.loads(trainer.encoder_text(trainer.sample_prompt(s["prompt"], "bcs style")))[
            "high_level_description"
        ]
        for s in samples
    }
    # The portrait, half-length, multi-figure, text, simple and complex kinds from its own
    # captions; the subject it never holds is written in its style.
    assert {c["high_level_description"] for c in CAPTIONS} <= described
    assert len(described) == 7
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    kinds = [d["data-sample"] for d in page.select("[data-sample-set] [data-sample]")]
    assert kinds[:3] == ["close-up portrait", "half-length", "multi-figure composition"]
    cost = page.select_one("[data-sample-cost]").text  # type: ignore[union-attr]
    assert "63 samples" in cost and "693 samples × ~30 s" in " ".join(cost.split())


def test_the_sample_set_edited_on_the_export_page_is_what_the_yaml_holds(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make(client, SIZES[:5])
    page = BeautifulSoup(client.get(f"/datasets/{dataset_id}/export").text, "html.parser")
    kinds = [i["value"] for i in page.select("[data-sample-set] input[name=sample_kind]")]
    texts = [t.text for t in page.select("[data-sample-set] textarea[name=sample_text]")]
    sources = [i["value"] for i in page.select("[data-sample-set] input[name=sample_source]")]
    edited = json.loads(texts[0])
    edited["high_level_description"] = "A close-up portrait of a girl with a pearl."
    texts[0] = json.dumps(edited)
    out = tmp_path / "e"
    form = {
        "out_dir": str(out), "force": "true", "sample_kind": kinds, "sample_text": texts,
        "sample_source": sources,
        "sample_on": [str(n) for n in range(len(kinds)) if n != 1],
        "sample_seeds": "7", "sample_strengths": "0.75, 1", "sample_seconds": "10",
    }  # fmt: skip
    r = client.post(f"/datasets/{dataset_id}/export", data=form)
    assert r.status_code == 200, r.text
    samples = run_of(out / "config" / "plan.yaml")["sample"]["samples"]
    assert len(samples) == 6 * 1 * 2
    first = trainer.encoder_text(trainer.sample_prompt(samples[0]["prompt"], "bcs style"))
    assert json.loads(first)["high_level_description"] == edited["high_level_description"]
    shown = BeautifulSoup(r.text, "html.parser")
    assert "12 samples" in shown.select_one("[data-sample-cost]").text  # type: ignore[union-attr]
    # The editor keeps every prompt as left: the unticked one unticked, each with its source.
    boxes = shown.select("[data-sample-set] input[name=sample_on]")
    assert len(boxes) == 7 and [b.has_attr("checked") for b in boxes][:3] == [True, False, True]
    before = [m.text for m in page.select("[data-sample-set] summary .meta")]
    assert [m.text for m in shown.select("[data-sample-set] summary .meta")] == before
    # Not JSON: refused with a sentence, the text kept on the page.
    form["sample_text"] = ["{broken", *texts[1:]]
    r = client.post(f"/datasets/{dataset_id}/export", data=form)
    assert r.status_code == 422 and "is not JSON" in r.text and "{broken" in r.text


def test_without_javascript_the_form_shows_the_chosen_profile_s_plan(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make(client, SIZES[:5])
    r = client.post(
        f"/datasets/{dataset_id}/export",
        data={"action": "preview", "profile": "96gb", "out_dir": str(tmp_path / "n")},
    )
    page = BeautifulSoup(r.text, "html.parser")
    assert r.status_code == 200 and not (tmp_path / "n").exists()
    assert "The 96gb profile" in page.select_one("#export-plan h3").text  # type: ignore[union-attr]
    assert page.select_one('[data-change="train.batch_size"]') is not None
    assert "96gb" in page.select_one("[data-lint-profile]").text  # type: ignore[union-attr]
    assert page.select_one("select[name=profile] option[selected]")["value"] == "96gb"  # type: ignore[index]
