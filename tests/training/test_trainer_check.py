"""The trainer's own code run on an export (issue 28 item 3), against a real AI-Toolkit checkout.

AITK_TEST_CHECKOUT names a checkout of ostris/ai-toolkit (a `git archive` of it will do: no
model, no venv needed); AITK_TEST_PYTHON the Python to run its code with (default: this one,
which has PyYAML and Pillow, as the checkout's venv does). Without a checkout the tests that
need one skip, saying so; the page's and the CLI's answers without one are tested always.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.training.checkout import Checkout
from app.training.trainer_check import CHECKED_COMMIT, check_export, export_config, intended
from tests.training.conftest import CAPTION, make_dataset

CHECKOUT = os.environ.get("AITK_TEST_CHECKOUT")
PYTHON = os.environ.get("AITK_TEST_PYTHON") or sys.executable
needs_checkout = pytest.mark.skipif(
    not CHECKOUT or not (Path(CHECKOUT) / "toolkit" / "dataloader_mixins.py").is_file(),
    reason="no AI-Toolkit checkout: set AITK_TEST_CHECKOUT to a checkout of ostris/ai-toolkit "
    "(git clone, or git archive of it) to run the trainer's own code on an export",
)


def export(client: TestClient, dataset_id: int, out: Path, **options: object) -> Path:
    r = client.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(out), **options})
    assert r.status_code in (200, 201), r.text
    return out


@needs_checkout
def test_the_trainer_receives_every_caption_as_saved(client: TestClient, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out")
    checkout = Checkout(root=Path(CHECKOUT or ""), python=Path(PYTHON))
    report = check_export(checkout=checkout, config_path=export_config(out, "baroque_chiaroscuro"))
    assert [c.name for c in report.images] == ["001.png", "002.png"]
    first = report.images[0]
    want = json.loads(json.dumps(CAPTION))
    want["high_level_description"] += " (0)"
    want["style_description"]["aesthetics"] = "bcs, " + want["style_description"]["aesthetics"]
    del want["compositional_deconstruction"]["elements"][0]["color_palette"]  # empty: dropped
    # The text the encoder receives: the caption with the trigger word, compact JSON.
    assert first.structured and first.differences == []
    assert first.encoder_text == intended(json.dumps(want, ensure_ascii=False), None)
    assert first.tokens > 50 and first.buckets and all(b.agrees for b in first.buckets)
    assert report.samples and all(s.structured and not s.differences for s in report.samples)
    if report.commit is None and not report.changed:
        assert report.version_note is None


@needs_checkout
def test_a_comma_written_into_a_caption_file_is_caught(client: TestClient, tmp_path: Path) -> None:
    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out")
    caption = out / "datasets" / "baroque_chiaroscuro" / "002.json"
    # A hand edit with a literal comma: the trainer's loader puts a space after it.
    caption.write_text(caption.read_text().replace("deep shadow", "deep, black shadow"))
    checkout = Checkout(root=Path(CHECKOUT or ""), python=Path(PYTHON))
    report = check_export(checkout=checkout, config_path=export_config(out, "baroque_chiaroscuro"))
    assert report.images[0].differences == []
    (diff,) = report.images[1].differences
    assert "deep, black" in diff and "deep,  black" in diff


@needs_checkout
def test_prefix_placement_reaches_the_encoder_as_plain_text(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out", trigger_placement="prefix", force=True)
    checkout = Checkout(root=Path(CHECKOUT or ""), python=Path(PYTHON))
    report = check_export(checkout=checkout, config_path=export_config(out, "baroque_chiaroscuro"))
    first = report.images[0]
    assert not first.structured and first.encoder_text.startswith("bcs {")
    assert "plain text" in first.differences[0]


@needs_checkout
def test_check_export_command_prints_what_the_encoder_receives(
    client: TestClient, tmp_path: Path, settings: object
) -> None:
    make_dataset(client)
    dataset_id = client.get("/api/datasets").json()[0]["id"]
    out = export(client, dataset_id, tmp_path / "out")
    args = ["check-export", "--dataset", "Baroque Chiaroscuro", "--folder", str(out),
            "--aitk-dir", CHECKOUT or "", "--python", PYTHON,
            "--data-dir", str(settings.data_dir), "--json"]  # type: ignore[attr-defined]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["checked_commit"] == CHECKED_COMMIT and report["differing"] == 0
    assert [i["name"] for i in report["images"]] == ["001.png", "002.png"]


def test_without_a_checkout_the_command_says_how_to_get_one(
    client: TestClient, settings: object
) -> None:
    make_dataset(client)
    args = ["check-export", "--dataset", "Baroque Chiaroscuro",
            "--data-dir", str(settings.data_dir)]  # type: ignore[attr-defined]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Say where AI-Toolkit is" in result.output


def test_without_a_checkout_the_export_page_says_what_it_would_show(client: TestClient) -> None:
    dataset_id = make_dataset(client)
    r = client.post(f"/api/datasets/{dataset_id}/trainer-check", json={})
    assert r.status_code == 422 and "Say where AI-Toolkit is" in r.json()["detail"]
    page = client.get(f"/datasets/{dataset_id}/export").text
    assert "data-trainer-check" in page
    assert "exact text" in page and "git clone https://github.com/ostris/ai-toolkit" in page


def copy_of_checkout(dest: Path) -> Path:
    """The parts of the real checkout the check reads, with a venv Python: exports may be
    written there without touching the real one."""
    import shutil

    src = Path(CHECKOUT or "")
    shutil.copytree(src / "toolkit", dest / "toolkit", ignore=shutil.ignore_patterns("*.pyc"))
    model = "extensions_built_in/diffusion_models/ideogram4/ideogram4.py"
    (dest / model).parent.mkdir(parents=True)
    shutil.copy(src / model, dest / model)
    shutil.copy(src / "run.py", dest / "run.py")
    (dest / "venv" / "bin").mkdir(parents=True)
    (dest / "venv" / "bin" / "python").write_text(f'#!/bin/sh\nexec "{PYTHON}" "$@"\n')
    (dest / "venv" / "bin" / "python").chmod(0o755)
    return dest


@needs_checkout
def test_the_export_page_runs_the_check_in_the_checkout(client: TestClient, tmp_path: Path) -> None:
    checkout = copy_of_checkout(tmp_path / "ai-toolkit")
    dataset_id = make_dataset(client)
    export(client, dataset_id, checkout)
    client.app.state.settings.aitk_dir = checkout  # type: ignore[attr-defined]
    page = client.get(f"/datasets/{dataset_id}/export").text
    assert "data-run-check" in page and "data-no-checkout" not in page
    r = client.get(f"/datasets/{dataset_id}/trainer-check", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert 'data-check-row="001.png"' in r.text and 'data-check-row="sample 1"' in r.text
    assert "each reaches the text encoder exactly as you saved it" in r.text
    assert "&#34;high_level_description&#34;:&#34;A scholar reads" in r.text
    r = client.post(f"/api/datasets/{dataset_id}/trainer-check", json={"aitk_dir": str(checkout)})
    assert r.status_code == 200, r.text
    assert r.json()["differing"] == 0 and len(r.json()["images"]) == 2


@needs_checkout
def test_another_version_of_the_trainer_is_named(client: TestClient, tmp_path: Path) -> None:
    checkout = copy_of_checkout(tmp_path / "ai-toolkit")
    mixins = checkout / "toolkit" / "dataloader_mixins.py"
    # A later trainer that joins the split caption differently.
    mixins.write_text(
        mixins.read_text().replace(
            "caption = ', '.join(token_list)\n        caption = inject",
            "caption = ','.join(token_list)\n        caption = inject",
        )
    )
    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out")
    report = check_export(
        checkout=Checkout(root=checkout, python=Path(PYTHON)),
        config_path=export_config(out, "baroque_chiaroscuro"),
    )
    assert report.changed == ["CaptionProcessingDTOMixin.get_caption"]
    assert report.version_note and "27a03a91" in report.version_note


@needs_checkout
def test_caption_dropout_is_said_not_shown_as_an_empty_caption(
    client: TestClient, tmp_path: Path
) -> None:
    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out")
    config = export_config(out, "baroque_chiaroscuro")
    text = config.read_text()
    assert "caption_dropout_rate: 0.05" in text and "cache_text_embeddings: true" in text
    # Without cached embeddings the trainer drops captions at random, here on every step.
    text = text.replace("caption_dropout_rate: 0.05", "caption_dropout_rate: 1.0")
    config.write_text(text.replace("cache_text_embeddings: true", "cache_text_embeddings: false"))
    checkout = Checkout(root=Path(CHECKOUT or ""), python=Path(PYTHON))
    report = check_export(checkout=checkout, config_path=config)
    assert all(c.structured and not c.differences for c in report.images)
    assert any("caption_dropout_rate 1.0" in n for n in report.notes)


def tiny_tokenizer(folder: Path) -> Path:
    """A tokenizer folder as transformers saves one: one token per whitespace-separated word,
    and a chat template of Qwen's shape (a user turn, then the assistant's opening)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir()
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% for c in m.content %}{{ c.text }}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% endif %}"
    )
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return folder


@needs_checkout
def test_tokens_are_counted_with_the_encoders_tokenizer_and_template(
    client: TestClient, tmp_path: Path
) -> None:
    import yaml

    dataset_id = make_dataset(client)
    out = export(client, dataset_id, tmp_path / "out")
    config = export_config(out, "baroque_chiaroscuro")
    doc = yaml.safe_load(config.read_text())
    model = doc["config"]["process"][0]["model"]
    # Ideogram4Model reads the text encoder (and its tokenizer) from here when it is set.
    model.setdefault("model_kwargs", {})["text_encoder_path"] = str(tiny_tokenizer(tmp_path / "te"))
    config.write_text(yaml.safe_dump(doc, allow_unicode=True))
    checkout = Checkout(root=Path(CHECKOUT or ""), python=Path(PYTHON))
    report = check_export(checkout=checkout, config_path=config)
    assert report.tokenizer_note is None
    for c in [*report.images, *report.samples]:
        # The text's words, plus the template's "<|im_start|>user" and its assistant turn.
        assert c.tokens_exact and c.tokens == len(c.encoder_text.split()) + 2
