"""htmx is served from static/vendor at the pinned version, with its licence, unmodified."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_vendor_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("vendor_htmx", ROOT / "tools" / "vendor_htmx.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_vendored_htmx_matches_pin() -> None:
    v = load_vendor_script()
    assert v.VERSION.startswith("2.")
    js = ROOT / "static" / "vendor" / v.JS_NAME
    assert hashlib.sha256(js.read_bytes()).hexdigest() == v.JS_SHA256
    assert "Zero-Clause BSD" in (ROOT / "static" / "vendor" / v.LICENSE_NAME).read_text()


def test_base_template_loads_the_pinned_htmx() -> None:
    v = load_vendor_script()
    assert f'src="/static/vendor/{v.JS_NAME}"' in (ROOT / "templates" / "base.html").read_text()


def test_no_cdn_anywhere() -> None:
    for path in list((ROOT / "templates").rglob("*.html")) + list((ROOT / "static").rglob("*.js")):
        if "vendor" in path.parts:
            continue
        text = path.read_text()
        for cdn in ("unpkg.com", "jsdelivr", "cdnjs", "googleapis"):
            assert cdn not in text, f"{path} refers to {cdn}"
