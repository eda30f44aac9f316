"""Editor speed: server time of the editor page for a caption with 30 elements.

Runs the real app in process (no network) on a temporary data dir, and prints the median
and p95 of GET /images/{id} beside two baselines measured in the same run: /healthz (the
framework's floor) and the JSON caption read. Goal: the editor page under 50 ms.

    python bench/editor.py [REQUESTS]     (default 300)
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.web.app import create_app  # noqa: E402

GOAL_MS = 50.0


def caption(n: int) -> dict:
    elements = []
    for i in range(n):
        y, x = (i * 31) % 900, (i * 47) % 900
        element = {
            "type": "text" if i % 5 == 0 else "obj",
            "bbox": [y, x, y + 90, x + 90],
            "desc": f"element {i}: a figure in a crimson cloak, lit from the upper left " * 2,
            "color_palette": ["#3B2A1E", "#6E4A2E", "#C8956A", "#8B1A1A", "#E8D5B0"],
        }
        if i % 5 == 0:
            element["text"] = f"INSCRIPTION {i}\nSECOND LINE"
            element = {k: element[k] for k in ("type", "bbox", "text", "desc", "color_palette")}
        elements.append(element)
    return {
        "high_level_description": "A crowded Baroque interior with thirty distinct subjects. " * 3,
        "style_description": {
            "aesthetics": "Italian Baroque, tenebrist",
            "lighting": "single hard source from the upper left",
            "medium": "painting",
            "art_style": "oil on canvas, warm glazes",
            "color_palette": ["#13100C", "#3B2A1E", "#6E4A2E", "#C8956A", "#8B1A1A", "#D9B26A"],
        },
        "compositional_deconstruction": {"background": "near-black interior", "elements": elements},
    }


def timed(client: TestClient, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text[:200]
    return out


def describe(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[int(len(ms) * 0.95) - 1]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data", _env_file=None))  # type: ignore[call-arg]
        with TestClient(app) as client:
            ds = client.post("/api/datasets", json={"name": "Bench"}).json()["id"]
            buf = io.BytesIO()
            Image.new("RGB", (1600, 1200), (90, 60, 40)).save(buf, "JPEG")
            r = client.post(
                f"/api/datasets/{ds}/images",
                files=[("files", ("a.jpg", buf.getvalue(), "image/jpeg"))],
            )
            iid = r.json()["imported"][0]["image_id"]
            r = client.put(
                f"/api/images/{iid}/caption", json={"revision": 0, "caption": caption(30)}
            )
            assert r.status_code == 200, r.text
            for url in ("/healthz", f"/api/images/{iid}/caption", f"/images/{iid}"):
                timed(client, url, 20)  # warm-up: templates compiled, caches filled
            floor = describe(timed(client, "/healthz", n))
            api = describe(timed(client, f"/api/images/{iid}/caption", n))
            page = describe(timed(client, f"/images/{iid}", n))
        app.state.db.dispose()
    print(f"{n} requests each, in process (median / p95 ms):")
    print(f"  /healthz (floor)          {floor[0]:7.2f} / {floor[1]:7.2f}")
    print(f"  caption JSON              {api[0]:7.2f} / {api[1]:7.2f}")
    print(f"  editor page, 30 elements  {page[0]:7.2f} / {page[1]:7.2f}")
    print(
        f"editor page / floor: {page[0] / floor[0]:.1f}x; / caption JSON: {page[0] / api[0]:.1f}x"
    )
    verdict = "meets" if page[1] < GOAL_MS else "MISSES"
    print(f"p95 {page[1]:.1f} ms {verdict} the {GOAL_MS:.0f} ms goal")


if __name__ == "__main__":
    main()
