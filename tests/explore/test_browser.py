"""The explorer's page in a real browser (Debian's chromium, driven by Playwright) against a real uvicorn
server: the map follows the pointer, the sliders and the lower groups' redraw change the decoded image, and
the page runs without a console error (a script or style the content security policy blocked would be one)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from vaelab.explore.app import create_app  # noqa: E402
from vaelab.explore.state import untrained_explorer  # noqa: E402

# The decoded image's pixels, read through a canvas (the img's src is a new blob URL on every answer).
PIXELS = """() => {
  const img = document.getElementById("decoded");
  if (!img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext("2d").drawImage(img, 0, 0);
  return c.toDataURL();
}"""


@contextlib.contextmanager
def serving(explorer):
    """The app on a uvicorn server in a thread, on a free loopback port: yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    app = create_app(explorer, allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@contextlib.contextmanager
def page_of(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    wait_for(page, PIXELS)
    yield page
    assert problems == []
    page.close()


def wait_for(page, script: str, arg=None, timeout: float = 30.0):
    """Poll `script` until it returns something truthy. (Playwright's wait_for_function evaluates a string,
    which the page's content security policy, rightly, forbids.)"""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(script, arg)):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.05)
    return value


def changed(page, before: str) -> str:
    """The decoded image's pixels once they differ from `before`."""
    return wait_for(page, f"(before) => {{ const now = ({PIXELS})(); return now !== before && now; }}", before)


def test_the_map_decodes_the_image_under_the_pointer(browser, tmp_path):
    with serving(untrained_explorer("cvae2", images=300)) as url, page_of(browser, url) as page:
        page.wait_for_selector("#legend span")  # the points and their legend are drawn
        assert page.is_visible("#map") and not page.is_visible("#sliders-box")
        wait_for(page, "() => document.getElementById('samples').naturalWidth > 0")
        wait_for(page, "() => document.getElementById('strip').naturalWidth > 0")
        before = page.evaluate(PIXELS)
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.move(box["x"] + box["width"] - 30, box["y"] + box["height"] - 40, steps=8)
        changed(page, before)
        wait_for(page, "() => !document.getElementById('z-text').textContent.includes('0.00, 0.00')")
        page.screenshot(path=tmp_path / "map.png", full_page=True)
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_sliders_and_the_redraw_of_the_lower_groups_change_the_image(browser, tmp_path):
    explorer = untrained_explorer("mnist-hvae", images=64)
    with serving(explorer) as url, page_of(browser, url) as page:
        assert page.is_visible("#sliders-box") and not page.is_visible("#map")
        sliders = page.locator("#sliders input[type=range]")
        assert sliders.count() == explorer.model.latent_dim
        first = int(sliders.first.get_attribute("data-dim"))
        assert first == explorer.order[0]  # the most informative dim first
        before = page.evaluate(PIXELS)
        sliders.first.fill("3")  # sets the value and fires `input`
        before = changed(page, before)
        page.locator("#lower-t").fill("1")
        before = changed(page, before)
        page.click("#redraw")
        changed(page, before)
        page.screenshot(path=tmp_path / "sliders.png", full_page=True)
