"""A real Chromium for the end-to-end tests: Debian's /usr/bin/chromium through Playwright's
sync API, and the check that a screenshot shows a page rather than a blank."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000

ALL_LOADED = """(selector) => {
    const imgs = [...document.querySelectorAll(selector)];
    return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0);
}"""


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, path
    with Image.open(path) as img:
        assert img.width > 300 and img.height > 300
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 50, f"{path} is blank"


def skip_without_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh page of a headless Chromium (1280x900), closed afterwards. Inside the block
    Playwright's event loop runs: Django refuses ORM calls there, so read the database before."""
    from playwright.sync_api import expect, sync_playwright

    skip_without_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()
