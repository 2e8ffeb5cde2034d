"""The rendered book in a real browser: Debian's headless Chromium, driven by Playwright, fully offline.

Every page of ``book/_toc.yml`` is served from a localhost ``http.server`` and loaded once; the checks read what a
reader would meet: the page loads (HTTP 200), its notebook figures are there and decoded (naturalWidth > 0),
its math is typeset by the book's own MathJax (no TeX errors), the console is clean, every same-site link
resolves to an existing file and anchor, nothing is fetched from another host, and widgets degrade to static
output. Screenshots of the landing page and one chapter go to ``_build/screenshots/``.

Run by ``make browser-test`` (PINNKIT_BOOK_HTML points at the HTML; see conftest.py).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("PINNKIT_BOOK_HTML", ROOT / "_build" / "html")).resolve()
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "_build" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000                      # one page, on 2 shared cores
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
REMOVED = {"remove-output", "remove_output", "remove-cell", "remove_cell"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def toc_docs(toc: Path | None = None) -> list[str]:
    """Every ``file:`` of the table of contents (root first), in reading order."""
    toc = toc or Path(os.environ.get("PINNKIT_BOOK_TOC", ROOT / "book" / "_toc.yml"))
    data = yaml.safe_load(toc.read_text())
    docs = [data["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                docs.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in data.items() if k != "root"})
    return [d.removesuffix(".md").removesuffix(".ipynb") for d in docs]


DOCS = toc_docs()


def expected_figures(doc: str) -> int:
    """Image outputs of the stored notebook that the book shows (cells not tagged remove-output/-cell)."""
    path = ROOT / f"{doc}.ipynb"
    if not path.exists():
        return 0
    count = 0
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code" or REMOVED & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data and any(m in data for m in IMAGE_MIMES):
                count += 1
    return count


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.update(v for k, v in attrs if k in ("id", "name") and v)
        src = a.get("src") if tag in ("script", "iframe", "img") else (
            a.get("href") if tag == "link" and "stylesheet" in (a.get("rel") or "") else None)
        if src and (src.startswith(("http://", "https://", "//"))):
            self.external.append(f"<{tag}> {src}")


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> _Anchors:
    parser = _Anchors()
    parser.feed(path.read_text(errors="replace"))
    return parser


class _Handler(SimpleHTTPRequestHandler):
    log: list[tuple[str, int]] = []

    def __init__(self, *args, **kw):
        super().__init__(*args, directory=str(HTML), **kw)

    def log_request(self, code="-", size="-"):
        _Handler.log.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no book at {HTML}: build it (make browser-test builds it from the stored notebooks)")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `apt-get install chromium` (make browser-deps does it)")
    profile = tempfile.mkdtemp(prefix="pinnkit-chromium-")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        external: list[str] = []

        def offline(route):
            host = urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:                                     # the book must not need the network
                external.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        context.external = external
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def visit(server, browser):
    """Load a page once; return what the checks need."""
    cache: dict[str, dict] = {}

    def load(doc: str) -> dict:
        if doc in cache:
            return cache[doc]
        page = browser.new_page()
        console, errors, failed = [], [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        n_external, n_log = len(browser.external), len(_Handler.log)
        response = page.goto(f"{server}/{doc}.html", wait_until="load", timeout=TIMEOUT_MS)
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
        page.evaluate("async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
                      " await MathJax.startup.promise; }")
        info = page.evaluate("""() => ({
            imgs: [...document.querySelectorAll('img')].map(i => ({src: i.currentSrc || i.src,
                   ok: i.complete && i.naturalWidth > 0, output: !!i.closest('.cell_output')})),
            math: document.querySelectorAll('.math').length,
            mjx: document.querySelectorAll('mjx-container').length,
            merror: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent),
            widgets: document.querySelectorAll(
                'script[type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets').length,
            links: [...document.querySelectorAll('a[href]')].map(a => a.href),
        })""")
        info.update(status=response.status if response else None, url=page.url, page=page,
                    console=console, errors=errors, failed=failed,
                    external=browser.external[n_external:],
                    http_errors=[(p, c) for p, c in _Handler.log[n_log:]
                                 if c >= 400 and not p.startswith("/favicon.ico")])
        cache[doc] = info
        return info

    yield load
    for info in cache.values():
        info["page"].close()


def test_toc_pages_were_built():
    missing = [d for d in DOCS if not (HTML / f"{d}.html").exists()]
    assert not missing, f"TOC pages missing from {HTML}: {missing}"


def test_no_page_references_an_external_script_or_stylesheet():
    pages = sorted(HTML.rglob("*.html"))
    assert pages
    bad = {str(p.relative_to(HTML)): parse(p).external for p in pages if parse(p).external}
    assert not bad, f"pages that need the network (the book must be self-contained): {bad}"


@pytest.mark.parametrize("doc", DOCS)
def test_page_loads_offline_with_clean_console(visit, doc):
    info = visit(doc)
    assert info["status"] == 200, (doc, info["status"])
    assert not info["external"], f"{doc}: requests to other hosts: {info['external']}"
    assert not info["http_errors"], f"{doc}: missing files: {info['http_errors']}"
    assert not info["failed"], f"{doc}: failed requests: {info['failed']}"
    assert not info["errors"], f"{doc}: JavaScript errors: {info['errors']}"
    assert not info["console"], f"{doc}: console errors: {info['console']}"


@pytest.mark.parametrize("doc", DOCS)
def test_figures_are_present_and_decoded(visit, doc):
    info = visit(doc)
    broken = [i["src"] for i in info["imgs"] if not i["ok"]]
    assert not broken, f"{doc}: images that did not load: {broken}"
    shown = sum(i["output"] for i in info["imgs"])
    expected = expected_figures(doc)
    assert shown >= expected, f"{doc}: {shown} output figures in the page, {expected} in the stored notebook"


@pytest.mark.parametrize("doc", DOCS)
def test_math_is_typeset(visit, doc):
    info = visit(doc)
    if info["math"]:
        assert info["mjx"] >= info["math"], f"{doc}: {info['math']} math elements, {info['mjx']} typeset"
    assert not info["merror"], f"{doc}: TeX errors: {info['merror']}"


@pytest.mark.parametrize("doc", DOCS)
def test_widgets_degrade_to_static_output(visit, doc):
    # offline there is no widget manager: a widget view would be an empty box (tag the cell remove-output and
    # follow it by a static figure, CONTRIBUTING.md)
    assert visit(doc)["widgets"] == 0, f"{doc}: widget views in the page"


@pytest.mark.parametrize("doc", DOCS)
def test_internal_links_resolve(visit, server, doc):
    info = visit(doc)
    bad = []
    for href in sorted(set(info["links"])):
        if not href.startswith(server + "/"):
            continue                                   # other sites: not ours to check offline
        url, fragment = urldefrag(href)
        rel = unquote(urlsplit(url).path).lstrip("/")
        target = HTML / rel
        if target.is_dir() or rel == "":
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"{href}: no file {target.relative_to(HTML)}")
        elif fragment and target.suffix == ".html" and unquote(fragment) not in parse(target).ids:
            bad.append(f"{href}: no anchor #{fragment}")
    assert not bad, f"{doc}: broken internal links:\n" + "\n".join(bad)


def test_screenshots(visit):
    SHOTS.mkdir(parents=True, exist_ok=True)
    landing = visit(DOCS[0])
    landing["page"].screenshot(path=SHOTS / "landing.png")
    with_figure = [d for d in DOCS[1:] if any(i["output"] for i in visit(d)["imgs"])]
    assert with_figure, "no chapter with a figure to screenshot"
    chapter = visit(with_figure[0])["page"]
    chapter.locator(".cell_output img").first.scroll_into_view_if_needed()
    chapter.screenshot(path=SHOTS / "chapter.png")
    for name in ("landing.png", "chapter.png"):
        assert (SHOTS / name).stat().st_size > 20_000, f"{name} looks blank"
