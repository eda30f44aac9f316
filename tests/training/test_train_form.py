"""The Train form without JavaScript: a refusal is the form again, with the sentence and the
values typed (issue 25 item 9); with htmx, the form alone."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.training.conftest import make_dataset


def test_a_refusal_renders_the_form_with_what_was_typed(client: TestClient, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    typed = {"aitk_dir": str(tmp_path), "steps": "30", "save_every": "10", "profile": "16gb",
             "force": "true"}  # fmt: skip
    r = client.post(f"/datasets/{dataset_id}/train", data=typed, follow_redirects=False)
    assert r.status_code == 422
    assert "data-train-error" in r.text and "is not an AI-Toolkit checkout" in r.text
    assert (
        "toolkit/job.py" in r.text
        and "git clone https://github.com/ostris/ai-toolkit.git" in r.text
    )
    assert f'value="{tmp_path}"' in r.text and 'value="30"' in r.text and 'value="10"' in r.text
    assert re.search(r'<option value="16gb"\s+selected', r.text)
    assert re.search(r'name="force" value="true"\s+checked', r.text)

    r = client.post(
        f"/datasets/{dataset_id}/train", data={**typed, "steps": "many"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert r.status_code == 422
    assert "<html" not in r.text and "Steps: give a whole number" in r.text
