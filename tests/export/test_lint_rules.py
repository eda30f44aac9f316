"""The lint as a table of rules keyed by their codes: every finding comes from one of them,
an image's findings in the table's order, and each rule can be run alone."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.export.lint import DATASET_RULES, IMAGE_RULES, MISSING_CAPTION
from tests import imagefiles as f

CAPTION = {
    "high_level_description": "A bcs scholar reads a letter signed [name].",
    "compositional_deconstruction": {"background": "a dark study", "elements": []},
}


def test_every_finding_is_a_rule_of_the_table(client: TestClient, dataset_id: int) -> None:
    files = [("files", (f"{n}.jpg", f.jpeg_bytes(n), "image/jpeg")) for n in (1, 2)]
    imported = client.post(f"/api/datasets/{dataset_id}/images", files=files).json()["imported"]
    captioned = imported[0]["image_id"]
    r = client.put(f"/api/images/{captioned}/caption", json={"revision": 0, "caption": CAPTION})
    assert r.status_code == 200, r.text
    findings = client.get(f"/api/datasets/{dataset_id}/lint").json()
    codes = [x["code"] for x in findings]
    assert {"missing_caption", "trigger_in_caption", "placeholder_in_caption"} <= set(codes)
    assert {"not_approved", "few_images"} <= set(codes)
    table = [*IMAGE_RULES, *DATASET_RULES]
    assert MISSING_CAPTION.severity == "error"
    for x in findings:
        code = "verifier" if x["code"].startswith("verifier_") else x["code"]
        assert code in table or code == "missing_caption", code
        if code in table and not code.startswith("verifier"):
            rules = IMAGE_RULES | DATASET_RULES
            assert x["severity"] == rules[code].severity
    # One image's findings come in the table's order; the dataset's come last.
    mine = [c for c, x in zip(codes, findings, strict=True) if x["image_id"] == captioned]
    order = [table.index("verifier" if c.startswith("verifier_") else c) for c in mine]
    assert order == sorted(order)
    assert codes[-1] in DATASET_RULES
