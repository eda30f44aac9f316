"""Issue 17's pages in real Chromium: the grid (selection, bulk actions, search, sort, layout),
forms, the upload report, find and replace, near-duplicates, the drafting card, the dark
theme and the favicon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from app.config import Settings
from app.models import DraftItem, DraftJob, ItemStatus, JobStatus
from tests import imagefiles as f
from tests.browser.conftest import serving

pytestmark = pytest.mark.browser


def caption(text: str) -> dict:
    return {
        "high_level_description": text,
        "compositional_deconstruction": {"background": "a dark study", "elements": []},
    }


def dataset_with(url: str, tmp_path: Path, n: int, captioned: int = 0) -> tuple[int, list[int]]:
    ds = httpx.post(f"{url}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    paths = [f.jpeg(tmp_path / f"p{i:02d}.jpg", i + 1, (1200 - 20 * i, 900)) for i in range(n)]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    r = httpx.post(f"{url}/api/datasets/{ds}/images", files=files, timeout=60)
    ids = [o["image_id"] for o in r.json()["imported"]]
    for i in ids[:captioned]:
        httpx.put(
            f"{url}/api/images/{i}/caption",
            json={"revision": 0, "caption": caption(f"Saint {i} by candlelight.")},
        )
    return ds, ids


def statuses(url: str, ds: int) -> dict[int, str]:
    return {i["id"]: i["status"] for i in httpx.get(f"{url}/api/datasets/{ds}/images").json()}


def test_grid_selects_with_shift_click_and_acts_in_bulk(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds, ids = dataset_with(live_server, tmp_path, 6, captioned=6)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{ds}")
    approve = page.locator("#bulk button[value=approve]")
    assert approve.is_disabled()  # nothing selected yet
    checks = page.locator("[data-tile-check]")
    checks.nth(1).click()
    checks.nth(4).click(modifiers=["Shift"])
    assert page.locator("[data-bulk-count]").inner_text() == "4 selected"
    assert page.locator("li.tile.selected").count() == 4
    # While selecting, a click on a picture selects it instead of opening the editor.
    page.locator("li.tile a.thumb").nth(5).click()
    assert page.url.endswith(f"/datasets/{ds}")
    assert page.locator("[data-bulk-count]").inner_text() == "5 selected"
    approve.click()
    page.locator("[data-bulk-notice]").wait_for(timeout=15_000)
    assert page.locator("[data-bulk-notice] span").inner_text() == "5 images approved."
    assert page.locator("[data-bulk-notice] [data-bulk-undo] button").is_visible()
    got = statuses(live_server, ds)
    assert [got[i] for i in ids] == ["edited"] + ["approved"] * 5
    # Every image the filter matches, across pages, to the trash.
    page.locator("[data-select-all]").check()
    assert "every match" in page.locator("[data-bulk-count]").inner_text()
    page.locator("#bulk button[value=trash]").click()
    page.locator("[data-bulk-notice]").wait_for(timeout=15_000)
    assert "6 images moved to the trash" in page.locator("[data-bulk-notice]").inner_text()
    assert page.locator("li.tile").count() == 0


def test_grid_search_sort_excerpt_and_a_grid_that_fills_the_screen(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds, ids = dataset_with(live_server, tmp_path, 8, captioned=2)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{ds}")
    # The upload and drafting cards are folded: the grid starts in the upper half of the screen.
    assert page.locator("details.upload").get_attribute("open") is None
    assert page.locator("details.draft").get_attribute("open") is None
    assert page.locator("li.tile").first.bounding_box()["y"] < 450
    assert page.locator("li.tile").count() == 8
    assert page.locator(f"li.tile[data-image-id='{ids[0]}'] [data-excerpt]").inner_text() == (
        f"Saint {ids[0]} by candlelight."
    )
    page.fill("#grid-q", "candle")
    page.wait_for_function("document.querySelectorAll('li.tile').length === 2", timeout=15_000)
    assert "q=candle" in page.url
    assert page.evaluate("document.activeElement.id") == "grid-q"  # typing goes on
    page.fill("#grid-q", "")
    page.wait_for_function("document.querySelectorAll('li.tile').length === 8", timeout=15_000)
    page.select_option("#grid-sort", "resolution")
    page.wait_for_url("**sort=resolution**", timeout=15_000)
    names = page.locator("li.tile .name").all_inner_texts()
    assert names[0] == "p00.jpg" and names[-1] == "p07.jpg"
    page.select_option("#grid-sort", "name")
    page.wait_for_url("**sort=name**", timeout=15_000)
    assert page.locator("li.tile .name").all_inner_texts() == sorted(names)
    # A filter link swaps the grid alone; the search then searches within that filter.
    page.locator("nav.filters a", has_text="edited").click()
    page.wait_for_function("document.querySelectorAll('li.tile').length === 2", timeout=15_000)
    page.fill("#grid-q", f"Saint {ids[1]}")
    page.wait_for_function("document.querySelectorAll('li.tile').length === 1", timeout=15_000)
    assert "status=edited" in page.url
    # No toolbar wraps at the smaller screen either.
    page.set_viewport_size({"width": 1280, "height": 720})
    tops = page.locator("#bulk .bulk-actions button").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().top)"
    )
    assert len(set(tops)) == 1


def test_typed_text_is_not_bold_labels_stay_on_their_line_and_links_are_not_blue(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds, _ = dataset_with(live_server, tmp_path, 1)
    page.set_viewport_size({"width": 1440, "height": 900})
    for path in ("/", f"/datasets/{ds}/style", f"/datasets/{ds}/replace", f"/datasets/{ds}/export"):
        page.goto(live_server + path)
        weights = page.locator(
            "main input:not([type=checkbox]):not([type=radio]):not([type=hidden]), main textarea"
        ).evaluate_all("els => els.map(e => getComputedStyle(e).fontWeight)")
        assert weights and set(weights) == {"400"}, (path, weights)
        heights = page.locator("main select").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().height)"
        )
        assert all(h >= 30 for h in heights), (path, heights)
    page.goto(f"{live_server}/datasets/{ds}/style")
    technique = page.locator("label:has(textarea[name=render]) > span").first
    line = float(technique.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20"))
    assert technique.bounding_box()["height"] < 2 * line  # one line, not five
    page.goto(f"{live_server}/datasets/{ds}/export")
    field = page.locator("input[name=max_side]").bounding_box()
    unit = page.locator(".with-unit").bounding_box()
    assert abs(field["y"] - unit["y"]) < 6 and unit["height"] < 2 * field["height"]
    assert page.locator(".with-unit").evaluate("e => getComputedStyle(e).fontWeight") == "400"
    page.goto(f"{live_server}/datasets/{ds}")
    colour = page.locator("nav.filters a").nth(1).evaluate("e => getComputedStyle(e).color")
    assert colour not in ("rgb(0, 0, 238)", "rgb(85, 26, 139)")


def test_upload_report_names_flags_and_the_banner_comes_without_reload(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds = httpx.post(f"{live_server}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    page.goto(f"{live_server}/datasets/{ds}")
    assert page.locator("[data-near-duplicates]").count() == 0
    original = f.jpeg(tmp_path / "a.jpg", 11)
    copy = f.near_copy(original, tmp_path / "b.jpg")
    small = f.jpeg(tmp_path / "small.jpg", 12, (700, 500))
    page.set_input_files("[data-file-input]", [str(original), str(copy), str(small)])
    page.locator("[data-near-duplicates]").wait_for(timeout=30_000)
    lines = page.locator("[data-upload-report] li").all_inner_texts()
    assert any("b.jpg: imported · near-duplicate of a.jpg" in t for t in lines), lines
    assert any("a.jpg: imported · near-duplicate of b.jpg" in t for t in lines), lines
    assert any("small.jpg: imported" in t and "low resolution (700×500" in t for t in lines)


def test_find_and_replace_marks_the_match_and_an_invalid_regex_clears_the_result(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds, _ = dataset_with(live_server, tmp_path, 3, captioned=3)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{ds}/replace")
    page.fill("input[name=find]", "candlelight")
    page.fill("input[name=replace]", "lamplight")
    page.click("button:has-text('Preview')")
    page.locator("[data-changes]").wait_for(timeout=15_000)
    assert page.locator("td.before mark").all_inner_texts() == ["candlelight"] * 3
    assert page.locator("td.after mark").all_inner_texts() == ["lamplight"] * 3
    assert page.locator("[data-changes] del").count() == 0
    lefts = page.locator("td.before").evaluate_all(
        "tds => tds.map(t => Math.round(t.getBoundingClientRect().left))"
    )
    assert len(set(lefts)) == 1  # the columns line up from caption to caption
    page.check("input[name=regex]")
    page.fill("input[name=find]", "(")
    page.click("button:has-text('Preview')")
    error = page.locator("#result [data-replace-error]")
    error.wait_for(timeout=15_000)
    assert "regular expression" in error.inner_text()
    assert page.locator("[data-changes]").count() == 0
    assert page.locator("button:has-text('Apply to these')").count() == 0


def test_near_duplicates_large_side_by_side_then_difference(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds = httpx.post(f"{live_server}/api/datasets", json={"name": "Tenebrists"}).json()["id"]
    original = f.jpeg(tmp_path / "a.jpg", 11)
    copy = f.near_copy(original, tmp_path / "b.jpg")
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (original, copy)]
    httpx.post(f"{live_server}/api/datasets/{ds}/images", files=files, timeout=60)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server}/datasets/{ds}/duplicates")
    a, b = page.locator(".view-a img"), page.locator(".view-b img")
    page.wait_for_function("[...document.querySelectorAll('.views img')].every(i => i.complete)")
    box_a, box_b = a.bounding_box(), b.bounding_box()
    assert box_a["width"] > 500 and box_b["x"] > box_a["x"] + box_a["width"] - 1  # side by side
    page.locator("label:has([data-view=difference])").click()
    box_a, box_b = a.bounding_box(), b.bounding_box()
    assert (
        abs(box_a["x"] - box_b["x"]) < 2 and abs(box_a["y"] - box_b["y"]) < 2
    )  # one over the other
    assert b.evaluate("i => getComputedStyle(i).mixBlendMode") == "difference"
    page.locator("label:has([data-view=overlay])").click()
    assert b.evaluate("i => getComputedStyle(i).opacity") == "0.5"
    assert b.evaluate("i => getComputedStyle(i).mixBlendMode") == "normal"


@pytest.fixture
def cpu_server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=tmp_path / "data", import_workers=2, draft_device="cpu")
    with serving(settings) as url:
        yield url, settings


def test_drafting_card_warns_keeps_a_failed_job_and_lists_models_on_disk(
    page, cpu_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, settings = cpu_server
    ds, ids = dataset_with(url, tmp_path, 1)
    folder = tmp_path / "my-qwen"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 2048)
    from sqlmodel import create_engine

    engine = create_engine(f"sqlite:///{settings.db_path}")
    with Session(engine) as session:
        job = DraftJob(
            dataset_id=ds,
            engine="local",
            model=str(folder),
            batch_size=1,
            total=1,
            failed=1,
            status=JobStatus.failed,
            error="The model could not be loaded.",
        )
        session.add(job)
        session.commit()
        session.add(
            DraftItem(job_id=job.id, image_id=ids[0], status=ItemStatus.failed, error="no JSON")
        )
        session.commit()
        job_id = job.id
    engine.dispose()
    page.goto(f"{url}/datasets/{ds}")
    assert "minutes an image" in page.locator("details.draft > summary").inner_text()
    page.locator("details.draft > summary").click()
    assert "minutes an image" in page.locator(".draft [data-cpu-warning]").inner_text()
    failed = page.locator("#draft-job[data-job-status=failed]")
    assert "The model could not be loaded." in failed.inner_text()
    page.reload()
    # Kept after a reload, named on the folded card so the grid keeps the screen.
    assert "job" in page.locator("[data-job-summary]").inner_text()
    assert "failed" in page.locator("[data-job-summary]").inner_text()
    page.locator("details.draft > summary").click()
    assert page.locator("#draft-job[data-job-status=failed]").is_visible()
    page.locator("[data-models-on-disk]").wait_for(state="attached", timeout=15_000)
    assert page.locator(f"[data-models-on-disk] tr[data-model='{folder}']").count() == 1
    page.locator("[data-dismiss-job]").click()
    page.locator("#draft-job[data-job-status]").wait_for(state="detached", timeout=15_000)
    page.reload()
    assert page.locator("#draft-job[data-job-status]").count() == 0
    page.goto(f"{url}/datasets/{ds}/draft-jobs")
    row = page.locator(f"tr[data-job='{job_id}']")
    assert "no JSON" in (row.text_content() or "") and "failed" in row.inner_text()


def test_dark_theme_follows_the_system_and_no_page_asks_for_a_missing_favicon(
    page, live_server: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds, ids = dataset_with(live_server, tmp_path, 2, captioned=1)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    def luminance(selector: str, prop: str = "backgroundColor") -> float:
        rgb = page.locator(selector).first.evaluate(f"e => getComputedStyle(e).{prop}")
        r, g, b = (int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    page.goto(f"{live_server}/datasets/{ds}")
    assert luminance("html") > 200 and luminance("li.tile") > 200
    page.emulate_media(color_scheme="dark")
    pages = [
        "/",
        f"/datasets/{ds}",
        f"/datasets/{ds}/style",
        f"/datasets/{ds}/replace",
        f"/datasets/{ds}/export",
        f"/datasets/{ds}/duplicates",
        f"/images/{ids[0]}",
    ]
    for path in pages:
        page.goto(live_server + path)
        assert luminance("html") < 40, path
        assert luminance("main", "color") > 180, path
    page.goto(f"{live_server}/datasets/{ds}")
    assert luminance("li.tile") < 60 and luminance("li.tile img") < 30  # a dark surround
    assert httpx.get(f"{live_server}/favicon.ico").status_code == 200
    assert not [u for u in missing if "favicon" in u], missing
