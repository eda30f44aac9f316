"""Import into a real SQLite file: duplicates, near-duplicates, flags, sidecars, failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from app import datasets as ds
from app.config import Settings
from app.images import catalog
from app.images.importer import import_sources
from app.images.sources import walk_paths
from app.images.store import ContentStore
from app.models import Flag, Image, NearDuplicate
from tests import imagefiles as f


def run_import(session: Session, settings: Settings, dataset, paths: list[Path]):  # type: ignore[no-untyped-def]
    sources, skipped = walk_paths(paths)
    return import_sources(
        session, settings=settings, dataset=dataset, sources=sources, skipped=skipped
    )


def test_import_folder_records_images(tmp_path: Path, session: Session, settings: Settings) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    for i in range(4):
        f.jpeg(tmp_path / "in" / f"{i:03d}.jpg", seed=i)
    report = run_import(session, settings, dataset, [tmp_path / "in"])
    assert [o.filename for o in report.of("imported")] == [
        "000.jpg",
        "001.jpg",
        "002.jpg",
        "003.jpg",
    ]
    rows = session.exec(select(Image).order_by(Image.position)).all()
    assert [(r.filename, r.width, r.height, r.position) for r in rows] == [
        (f"{i:03d}.jpg", 1200, 900, i + 1) for i in range(4)
    ]


def test_import_exact_duplicate_not_stored_twice(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    a = f.jpeg(tmp_path / "a.jpg", 1)
    (tmp_path / "copy.jpg").write_bytes(a.read_bytes())
    report = run_import(session, settings, dataset, [a, tmp_path / "copy.jpg"])
    assert len(report.of("imported")) == 1
    (dup,) = report.of("duplicate")
    assert dup.filename == "copy.jpg" and dup.duplicate_of == report.of("imported")[0].image_id
    again = run_import(session, settings, dataset, [a])
    assert again.of("duplicate")[0].reason == "the same file is already in this dataset"
    assert len(session.exec(select(Image)).all()) == 1
    assert len(store.all_blob_shas()) == 1


def test_import_same_image_into_two_datasets_shares_bytes(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    a = f.jpeg(tmp_path / "a.jpg", 1)
    for name in ("One", "Two"):
        report = run_import(session, settings, ds.create_dataset(session, name=name), [a])
        assert len(report.of("imported")) == 1
    assert len(store.all_blob_shas()) == 1


def test_import_flags_near_duplicates_in_pairs(
    tmp_path: Path, session: Session, settings: Settings
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    original = f.jpeg(tmp_path / "in" / "a.jpg", 11)
    f.near_copy(original, tmp_path / "in" / "b_small.jpg")
    f.jpeg(tmp_path / "in" / "c.jpg", 12)
    report = run_import(session, settings, dataset, [tmp_path / "in"])
    ids = {o.filename: o.image_id for o in report.of("imported")}
    assert [(a, b) for a, b, _ in report.near_duplicates] == [(ids["a.jpg"], ids["b_small.jpg"])]
    rows, total = catalog.list_images(session, dataset=dataset, flag=Flag.duplicate)
    assert total == 2 and {r.image.filename for r in rows} == {"a.jpg", "b_small.jpg"}


def test_resolve_near_duplicate_keep_one_trashes_other(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    original = f.jpeg(tmp_path / "a.jpg", 11)
    run_import(session, settings, dataset, [original, f.near_copy(original, tmp_path / "b.jpg")])
    pair = session.exec(select(NearDuplicate)).one()
    b_sha = session.get(Image, pair.image_b_id).sha256  # type: ignore[union-attr]
    moved = catalog.resolve_pair(session, pair_id=pair.id, keep="a")  # type: ignore[arg-type]
    assert moved is not None and moved.id == pair.image_b_id
    rows, total = catalog.list_images(session, dataset=dataset)
    assert total == 1 and [r.image.filename for r in rows] == ["a.jpg"]
    assert Flag.duplicate not in rows[0].flags
    assert catalog.open_pairs(session, dataset=dataset) == []
    # In the trash, not gone: its bytes stay through garbage collection.
    assert store.has_blob(b_sha)
    assert catalog.collect_garbage(session, store=store) == 0 and store.has_blob(b_sha)


def test_resolve_near_duplicate_keep_both_clears_flag(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    original = f.jpeg(tmp_path / "a.jpg", 11)
    run_import(session, settings, dataset, [original, f.near_copy(original, tmp_path / "b.jpg")])
    pair = session.exec(select(NearDuplicate)).one()
    catalog.resolve_pair(session, pair_id=pair.id, keep="both")  # type: ignore[arg-type]
    rows, _ = catalog.list_images(session, dataset=dataset)
    assert [Flag.duplicate in r.flags for r in rows] == [False, False]
    assert len(rows) == 2


def test_import_flags_low_resolution(tmp_path: Path, session: Session, settings: Settings) -> None:
    dataset = ds.create_dataset(session, name="Oils", resolution=1024)
    f.jpeg(tmp_path / "in" / "big.jpg", 1, size=(1400, 1100))
    f.jpeg(tmp_path / "in" / "small.jpg", 2, size=(1400, 700))
    # The short side is below 1024 but the area is not: the trainer shrinks it to 1120x928.
    f.jpeg(tmp_path / "in" / "wide.jpg", 3, size=(1200, 1000))
    run_import(session, settings, dataset, [tmp_path / "in"])
    rows, total = catalog.list_images(session, dataset=dataset, flag=Flag.low_resolution)
    assert total == 1 and rows[0].image.filename == "small.jpg"
    everything = {
        r.image.filename: r.flags for r in catalog.list_images(session, dataset=dataset)[0]
    }
    assert everything == {"big.jpg": [], "small.jpg": [Flag.low_resolution], "wide.jpg": []}
    wide = next(
        r.image for r in catalog.list_images(session, dataset=dataset)[0] if r.image.width == 1200
    )
    assert catalog.image_flags(session, wide, dataset) == []
    ds.update_dataset(session, dataset, resolution=768)
    assert catalog.list_images(session, dataset=dataset, flag=Flag.low_resolution)[1] == 0


def test_import_keeps_caption_sidecars_raw(
    tmp_path: Path, session: Session, settings: Settings
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    folder = tmp_path / "aitk"
    f.png(folder / "001.png", 1)
    (folder / "001.json").write_text('{"compositional_deconstruction": {"elements": []}}')
    f.png(folder / "002.png", 2)
    (folder / "002.txt").write_text("a knight, oil painting")
    f.png(folder / "003.png", 3)
    (folder / "003.json").write_bytes(b"{not json \xff")  # kept raw all the same
    report = run_import(session, settings, dataset, [folder])
    assert [o.sidecar for o in report.of("imported")] == ["json", "txt", "json"]
    rows = {i.filename: i for i in session.exec(select(Image))}
    assert rows["001.png"].caption_raw == '{"compositional_deconstruction": {"elements": []}}'
    assert (rows["002.png"].caption_raw, rows["002.png"].caption_raw_ext) == (
        "a knight, oil painting",
        "txt",
    )
    assert rows["003.png"].caption_raw.startswith("{not json ")  # type: ignore[union-attr]


def test_import_bad_files_refused_rest_imported(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    folder = tmp_path / "mixed"
    f.jpeg(folder / "good1.jpg", 1)
    (folder / "empty.jpg").write_bytes(b"")
    f.truncated(folder / "cut.jpg", f.jpeg_bytes(2), 0.5)
    (folder / "page.png").write_text("<html><body>not found</body></html>")
    f.jpeg(folder / "good2.jpg", 3)
    report = run_import(session, settings, dataset, [folder])
    assert sorted(o.filename for o in report.of("imported")) == ["good1.jpg", "good2.jpg"]
    refused = {o.filename: o.reason for o in report.of("refused")}
    assert set(refused) == {"empty.jpg", "cut.jpg", "page.png"}
    assert all(refused.values())
    referenced = {i.sha256 for i in session.exec(select(Image))}
    assert store.all_blob_shas() == referenced
    assert list(settings.tmp_dir.iterdir()) == []


def test_import_hidden_files_skipped(tmp_path: Path, session: Session, settings: Settings) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    f.jpeg(tmp_path / "in" / "seen.jpg", 1)
    f.jpeg(tmp_path / "in" / ".hidden.jpg", 2)
    f.jpeg(tmp_path / "in" / ".cache" / "x.jpg", 3)
    f.jpeg(tmp_path / "in" / "deeper" / "nested.jpg", 4)
    report = run_import(session, settings, dataset, [tmp_path / "in"])
    assert sorted(o.filename for o in report.of("imported")) == ["deeper/nested.jpg", "seen.jpg"]


def test_import_database_failure_leaves_nothing(
    tmp_path: Path, session: Session, settings: Settings, store: ContentStore
) -> None:
    dataset = ds.create_dataset(session, name="Oils")
    session.exec(  # type: ignore[call-overload]
        text(
            "CREATE TRIGGER boom BEFORE INSERT ON image WHEN NEW.filename = 'b.jpg' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    )
    session.commit()
    paths = [f.jpeg(tmp_path / "a.jpg", 1), f.jpeg(tmp_path / "b.jpg", 2)]
    with pytest.raises(Exception, match="disk on fire"):
        run_import(session, settings, dataset, paths)
    assert session.exec(select(Image)).all() == []
    assert store.all_blob_shas() == set()


def test_collect_garbage_takes_orphans_at_once_unless_an_import_is_in_flight(
    tmp_path: Path, session: Session, store: ContentStore
) -> None:
    import json
    import subprocess
    import sys
    import time

    from app.images.store import IMPORT_RECORD

    # No import in flight: bytes no image references go at once, however new.
    store.put_blob("ab" * 32, b"x")
    assert catalog.collect_garbage(session, store=store) == 1
    assert store.all_blob_shas() == set()
    # An import in flight here: bytes written since it began are kept (its rows are to come),
    # older ones still go.
    store.put_blob("cd" * 32, b"old")
    old = time.time() - 600
    os.utime(store.blob_path("cd" * 32), (old, old))
    with store.importing():
        store.put_blob("ef" * 32, b"its own")
        assert catalog.collect_garbage(session, store=store) == 1
        assert store.all_blob_shas() == {"ef" * 32}
    # The record of an import whose process died (a SIGKILLed server) keeps nothing.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = store.tmp_dir / f"{IMPORT_RECORD}{dead.pid}-x"
    record.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "started": 0}))
    assert catalog.collect_garbage(session, store=store) == 1
    assert store.all_blob_shas() == set() and not record.exists()


def test_import_refuses_symlinked_caption_files(
    tmp_path: Path, session: Session, settings: Settings
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("SECRET_FROM_OUTSIDE")
    folder = tmp_path / "in"
    for i, name in enumerate(["a", "b", "c", "d"]):
        f.png(folder / f"{name}.png", i)
    (folder / "a.txt").write_text("a lantern, oil on panel")
    (folder / "b.txt").symlink_to(outside)
    (folder / "c.txt").symlink_to("/proc/self/environ")
    (folder / "d.txt").symlink_to(folder / "a.txt")  # a link inside the folder is fine
    dataset = ds.create_dataset(session, name="Links")
    report = run_import(session, settings, dataset, [folder])
    raw = {i.filename: i.caption_raw for i in session.exec(select(Image))}
    assert raw == {
        "a.png": "a lantern, oil on panel",
        "b.png": None,
        "c.png": None,
        "d.png": "a lantern, oil on panel",
    }
    refused = {o.filename: o.reason for o in report.of("refused")}
    assert set(refused) == {"b.txt", "c.txt"}
    assert all("outside the imported folder" in r for r in refused.values())  # type: ignore[operator]
    # One image named on the command line: its caption link is refused the same way.
    sources, skipped = walk_paths([folder / "c.png"])
    assert sources[0].sidecar is None and skipped[0].filename == "c.txt"
    # And the real command says so, storing nothing of either file.
    data = tmp_path / "data"
    env = {**os.environ, "ATELIER_DATA_DIR": str(data), "SECRET_MARK": "ENV_SECRET_42"}
    r = subprocess.run(
        [sys.executable, "-m", "app", "import", str(folder), "--dataset", "L", "--create"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "b.txt: the caption file is a link to a file outside" in r.stdout
    db = (data / "atelier.db").read_bytes()
    assert b"SECRET_FROM_OUTSIDE" not in db and b"ENV_SECRET_42" not in db


def test_import_says_why_an_oversized_caption_file_was_not_kept(
    tmp_path: Path, session: Session, settings: Settings
) -> None:
    folder = tmp_path / "in"
    f.png(folder / "a.png", 1)
    (folder / "a.json").write_text("x" * (1024 * 1024 + 1))
    (folder / "a.txt").write_text("a lantern")
    dataset = ds.create_dataset(session, name="Big")
    report = run_import(session, settings, dataset, [folder])
    (imported,) = report.of("imported")
    assert imported.sidecar == "txt"  # the next caption file of its name is read instead
    refused = {o.filename: o.reason for o in report.of("refused")}
    assert refused == {"a.json": "the caption file is over 1 MB and was not read"}
