"""Fetches the pinned htmx from the npm registry into static/vendor/, checking its sha256.

Run it only to change the pinned version (then update VERSION and the two digests):
    python tools/vendor_htmx.py
The app serves the committed copy; nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "2.0.11"
TARBALL_URL = f"https://registry.npmjs.org/htmx.org/-/htmx.org-{VERSION}.tgz"
TARBALL_SHA256 = "165a2655073e9e6e55e307a7c74e8ebcdb76afb7701f9c16cfd106a13add408e"
JS_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
JS_NAME = f"htmx-{VERSION}.min.js"
LICENSE_NAME = f"htmx-{VERSION}.LICENSE"


def main() -> int:
    with urllib.request.urlopen(TARBALL_URL, timeout=60) as r:
        tarball = r.read()
    digest = hashlib.sha256(tarball).hexdigest()
    if digest != TARBALL_SHA256:
        print(f"htmx.org-{VERSION}.tgz has sha256 {digest}, expected {TARBALL_SHA256}")
        return 1
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        js = _member(tar, "package/dist/htmx.min.js")
        licence = _member(tar, "package/LICENSE")
    if hashlib.sha256(js).hexdigest() != JS_SHA256:
        print("dist/htmx.min.js does not match the pinned sha256")
        return 1
    VENDOR.mkdir(parents=True, exist_ok=True)
    (VENDOR / JS_NAME).write_bytes(js)
    (VENDOR / LICENSE_NAME).write_bytes(licence)
    print(f"wrote {VENDOR / JS_NAME} and {VENDOR / LICENSE_NAME}")
    return 0


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise SystemExit(f"{name} missing from the htmx tarball")
    return f.read()


if __name__ == "__main__":
    sys.exit(main())
