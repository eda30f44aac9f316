"""HTML pages, read with CSS selectors."""

from __future__ import annotations

from bs4 import BeautifulSoup
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlmodel import Session

from app.models import CaptionStatus, Image
from tests import imagefiles as f


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def test_create_dataset_from_form(client: TestClient) -> None:
    r = client.post(
        "/datasets",
        data={"name": "Old Masters", "trigger_word": "om", "resolution": "1024"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = soup(client.get(r.headers["location"]).text)
    assert page.select_one("h1").text == "Old Masters"  # type: ignore[union-attr]
    index = soup(client.get("/").text)
    assert [a.text for a in index.select("table.datasets td a[href^='/datasets/']")][
        0
    ] == "Old Masters"


def test_create_dataset_form_error_keeps_input(client: TestClient, dataset_id: int) -> None:
    r = client.post("/datasets", data={"name": "Baroque Chiaroscuro", "notes": "keep me"})
    assert r.status_code == 409
    page = soup(r.text)
    assert "already exists" in page.select_one("[role=alert]").text  # type: ignore[union-attr]
    assert page.select_one("textarea[name=notes]").text == "keep me"  # type: ignore[union-attr]


def test_rename_and_delete_with_confirmation(client: TestClient, dataset_id: int) -> None:
    r = client.post(
        f"/datasets/{dataset_id}/settings", data={"name": "Tenebrism", "resolution": "768"}
    )
    assert soup(r.text).select_one("[role=status]").text == "Saved."  # type: ignore[union-attr]
    assert client.get(f"/api/datasets/{dataset_id}").json()["resolution"] == 768
    ok = client.post(f"/datasets/{dataset_id}/delete", follow_redirects=False)
    assert ok.status_code == 303 and client.get(f"/api/datasets/{dataset_id}").status_code == 404
    # Deleting for good is the step that asks for the name.
    gone = f"/datasets/{dataset_id}/delete-for-good"
    assert client.post(gone, data={"confirm_name": "tenebrism"}).status_code == 422
    assert [d["id"] for d in client.get("/api/datasets/deleted").json()] == [dataset_id]
    done = client.post(gone, data={"confirm_name": "Tenebrism"}, follow_redirects=False)
    assert done.status_code == 303
    assert client.get("/api/datasets/deleted").json() == []


def test_grid_shows_thumbnails_status_and_flags(client: TestClient, dataset_id: int) -> None:
    client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[
            ("files", ("big.jpg", f.jpeg_bytes(1, (1400, 1100)))),
            ("files", ("small.jpg", f.jpeg_bytes(2, (800, 600)))),
        ],
    )
    page = soup(client.get(f"/datasets/{dataset_id}").text)
    tiles = page.select("ul.grid li.tile")
    assert [t.select_one(".name").text for t in tiles] == ["big.jpg", "small.jpg"]  # type: ignore[union-attr]
    assert tiles[0].select_one("img")["src"].endswith("/thumb")  # type: ignore[index]
    assert tiles[0].select_one(".badge.status").text == "no caption"  # type: ignore[union-attr]
    assert [b.text for b in tiles[1].select(".badge.flag-low_resolution")] == ["low resolution"]
    filtered = soup(client.get(f"/datasets/{dataset_id}?flag=low_resolution").text)
    assert [t.select_one(".name").text for t in filtered.select("li.tile")] == ["small.jpg"]  # type: ignore[union-attr]


def test_grid_htmx_request_gets_fragment(client: TestClient, dataset_id: int) -> None:
    r = client.get(f"/datasets/{dataset_id}", headers={"HX-Request": "true", "HX-Target": "grid"})
    assert r.text.lstrip().startswith('<section id="grid"')
    assert "<html" not in r.text


def test_grid_pages_through_ten_thousand_images(client: TestClient, dataset_id: int) -> None:
    engine = client.app.state.db  # type: ignore[attr-defined]
    rows = [
        dict(
            dataset_id=dataset_id,
            position=i,
            sha256=f"{i:064x}",
            filename=f"{i:05d}.jpg",
            format="JPEG",
            width=1024,
            height=1024,
            megapixels=1.05,
            aspect_ratio=1.0,
            orientation=1,
            mode="RGB",
            has_icc=False,
            frames=1,
            byte_size=1,
            phash="0" * 16,
            status=CaptionStatus.approved if i % 4 == 0 else CaptionStatus.none,
        )
        for i in range(1, 10_001)
    ]
    with Session(engine) as s:
        s.execute(insert(Image), rows)
        s.commit()
    page = soup(client.get(f"/datasets/{dataset_id}?page=42").text)
    names = [t.select_one(".name").text for t in page.select("li.tile")]  # type: ignore[union-attr]
    assert names[0] == f"{41 * 120 + 1:05d}.jpg" and len(names) == 120
    assert "page 42 of 84" in page.select_one("nav.pager").text  # type: ignore[union-attr]
    approved = soup(client.get(f"/datasets/{dataset_id}?status=approved&page=2").text)
    assert approved.select_one("li.tile .name").text == "00484.jpg"  # type: ignore[union-attr]
    counts = {a.text.split(" (")[0]: a.text for a in approved.select("nav.filters a")}
    assert counts["approved"] == "approved (2500)"


def test_names_are_escaped(client: TestClient) -> None:
    evil = '<script>alert("x")</script>'
    ds = client.post("/api/datasets", json={"name": evil, "trigger_word": "<b>t</b>"}).json()["id"]
    client.post(f"/api/datasets/{ds}/images", files=[("files", (f"{evil}.jpg", f.jpeg_bytes(1)))])
    for url in ("/", f"/datasets/{ds}", f"/datasets/{ds}/settings"):
        html = client.get(url).text
        assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_near_duplicate_page_resolves(client: TestClient, dataset_id: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = f.jpeg(tmp_path / "a.jpg", 31)
    b = f.near_copy(a, tmp_path / "b.jpg")
    client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[("files", ("a.jpg", a.read_bytes())), ("files", ("b.jpg", b.read_bytes()))],
    )
    grid = soup(client.get(f"/datasets/{dataset_id}").text)
    notice = " ".join(grid.select_one(".notice").text.split())  # type: ignore[union-attr]
    assert notice == "1 near-duplicate pair to resolve"
    page = soup(client.get(f"/datasets/{dataset_id}/duplicates").text)
    form = page.select_one("article.pair form")
    data = {i["name"]: i["value"] for i in form.select("input")}  # type: ignore[union-attr]
    r = client.post(form["action"], data=data)  # type: ignore[index,arg-type]
    assert "No near-duplicates left" in r.text


def test_image_page_shows_metadata(client: TestClient, dataset_id: int) -> None:
    body = client.post(
        f"/api/datasets/{dataset_id}/images",
        files=[
            ("files", ("p.jpg", f.jpeg_bytes(1))),
            ("files", ("p.txt", b"an oil painting")),
        ],
    ).json()
    page = soup(client.get(f"/images/{body['imported'][0]['image_id']}").text)
    assert page.select_one("[data-box-stage] img")["src"].endswith("/file")  # type: ignore[index]
    assert page.select_one("pre.raw").text == "an oil painting"  # type: ignore[union-attr]
    # The .txt caption was read as the high-level description.
    field = page.select_one("textarea[name=high_level_description]")
    assert field.text == "an oil painting"  # type: ignore[union-attr]


def test_unknown_filter_is_a_clear_error(client: TestClient, dataset_id: int) -> None:
    r = client.get(f"/datasets/{dataset_id}?status=finished")
    assert r.status_code == 422
    assert "Unknown status filter" in soup(r.text).select_one("[role=alert]").text  # type: ignore[union-attr]


def test_pages_load_no_remote_assets(client: TestClient, dataset_id: int) -> None:
    for url in ("/", f"/datasets/{dataset_id}", "/docs"):
        page = soup(client.get(url).text)
        for tag in page.select("script[src], link[href]"):
            ref = tag.get("src") or tag.get("href")
            assert ref.startswith("/static/"), ref  # type: ignore[union-attr]


def test_the_app_keeps_its_database_as_state_db(client: TestClient) -> None:
    # "engine" means a drafting engine in this house; the database is the app's `db`.
    from sqlalchemy import Engine

    state = client.app.state  # type: ignore[attr-defined]
    assert isinstance(state.db, Engine)
    assert not hasattr(state, "engine")


def test_templates_get_their_data_from_the_route() -> None:
    # A page's context is built by its route; a Jinja global may format, never query.
    import inspect

    from jinja2 import Environment

    from app.web.app import create_app  # noqa: F401  (every router adds its globals)
    from app.web.templating import templates

    stock = Environment().globals.keys()
    for name, value in templates.env.globals.items():
        if name in stock or not callable(value) or inspect.isclass(value):
            continue
        asks = set(inspect.signature(value).parameters) & {"request", "session", "db"}
        assert not asks, f"the template global {name} takes {sorted(asks)}"
