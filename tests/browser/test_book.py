"""The rendered book in a real browser: Debian's headless Chromium, driven by Playwright, fully offline.

Every page of ``book/_toc.yml`` is served from a localhost ``http.server`` and loaded once; the checks read what a
reader would meet: the page loads (HTTP 200), its notebook figures are there and decoded (naturalWidth > 0),
its math is typeset by the book's own MathJax (no TeX errors), the console is clean, every same-site link
resolves to an existing file and anchor, nothing is fetched from another host, and widgets degrade to static
output. At a 1400 px wide window no page's article overflows horizontally (code blocks, outputs and equations that
are wider than the column must scroll inside themselves, not spill or be cut off), and every figure in a cell
output is followed by its caption paragraph ("Figure N.k. ..."); the sidebar numbers chapters 1-12 and nothing
else. Screenshots of the landing page and one chapter go to ``_build/screenshots/``.

Run by ``make browser-test`` (PINNKIT_BOOK_HTML points at the HTML; see conftest.py).
"""
from __future__ import annotations

import functools
import json
import os
import re
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
WIDTH_PX = 1400                           # the window the pages must fit (the teaching review read them at 1400)
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


# display equations wider than their box (they scroll sideways: split them with \begin{aligned})
WIDE_MATH_JS = """() => [...document.querySelectorAll('mjx-container[display]')]
    .filter(m => m.scrollWidth > m.clientWidth + 1)
    .map(m => `${m.scrollWidth} px in ${m.clientWidth} px: `
              + ((m.querySelector('mjx-assistive-mml') || m).textContent || '').trim().slice(0, 60))"""


# What a reader at WIDTH_PX would see sticking out of the column. `article`: the page's article element, its
# scrollWidth and clientWidth; `spill`: the outermost elements whose right edge passes the article's and that no
# scrolling box (overflow-x auto/scroll) between them and the article contains; `cut`: blocks (code, outputs,
# tables, display math) wider than themselves that hide the rest (overflow-x hidden/clip) instead of scrolling.
# `figures`: each image of a cell output with the element right after its cell (the caption paragraph).
LAYOUT_JS = """() => {
    const art = document.querySelector('article.bd-article') || document.querySelector('main article')
        || document.querySelector('main');
    const say = el => (el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
        ? '.' + el.className.trim().split(/\\s+/).slice(0, 3).join('.') : '') + ' "'
        + (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 70) + '"');
    const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
    const inScroller = el => {
        for (let p = el.parentElement; p && p !== art; p = p.parentElement) if (scrolls(p)) return true;
        return false;
    };
    const right = art.getBoundingClientRect().right;
    const spill = [], seen = new Set();
    for (const el of art.querySelectorAll('*')) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 || box.right <= right + 1 || seen.has(el.parentElement)) continue;
        seen.add(el);
        if (!inScroller(el)) spill.push(`${say(el)} (right edge ${Math.round(box.right - right)} px out)`);
    }
    const cut = [];
    for (const el of art.querySelectorAll('pre, .cell_output, .output, table, div.math, mjx-container[display]')) {
        const o = getComputedStyle(el).overflowX;
        if (el.scrollWidth > el.clientWidth + 1 && (o === 'hidden' || o === 'clip'))
            cut.push(`${say(el)} (${el.scrollWidth} px of content in ${el.clientWidth} px, overflow-x ${o})`);
    }
    const figures = [...art.querySelectorAll('.cell_output img')].map(img => {
        const cell = img.closest('.cell');
        const next = cell ? cell.nextElementSibling : null;
        return {src: (img.currentSrc || img.src).split('/').pop(),
                next: next ? say(next) : '(nothing after the cell)',
                caption: !!next && next.tagName === 'P' && /^Figure\\b/.test(next.textContent.trim())};
    });
    return {article: {scrollWidth: art.scrollWidth, clientWidth: art.clientWidth,
                      tag: art.tagName.toLowerCase() + '.' + art.className},
            spill: spill.slice(0, 10), cut: cut.slice(0, 10), figures, math: (""" + WIDE_MATH_JS + """)()};
}"""


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
            viewport={"width": WIDTH_PX, "height": 900})
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
        info.update(page.evaluate(LAYOUT_JS))
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


def test_chapters_are_numbered_in_the_sidebar():
    # book/_toc.yml: the chapters' part is `numbered`; "Start here" and the reference pages are not
    page = (HTML / f"{DOCS[0]}.html").read_text()
    links = dict(re.findall(r'<a class="reference internal" href="([^"#]+)">\s*([^<]*?)\s*</a>', page))
    wrong = []
    for doc in DOCS[1:]:
        name = doc.rsplit("/", 1)[-1]
        text = next((t for href, t in links.items() if href.endswith(f"{name}.html")), None)
        n = int(name[:2]) if name[:2].isdigit() else 0
        numbered = re.match(r"\d+\. ", text or "")
        if text is None or (numbered is None) == (1 <= n <= 12) or (numbered and numbered.group(0) != f"{n}. "):
            wrong.append(f"{doc}: {text!r}")
    assert not wrong, "sidebar entries (chapters 1-12 numbered 1-12, the others not):\n" + "\n".join(wrong)


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
def test_article_fits_the_window(visit, doc):
    # code blocks, outputs and display math wider than the column scroll inside themselves (overflow-x auto):
    # allowed; anything else that passes the article's right edge, or a block that hides its overflow, is not
    info = visit(doc)
    art = info["article"]
    assert art["scrollWidth"] <= art["clientWidth"] + 1 and not info["spill"], (
        f"{doc}: at {WIDTH_PX} px the article ({art['tag']}) is {art['scrollWidth']} px wide in a "
        f"{art['clientWidth']} px column; sticking out:\n" + "\n".join(info["spill"]))
    assert not info["cut"], f"{doc}: blocks that cut off their content instead of scrolling:\n" + "\n".join(info["cut"])


@pytest.mark.parametrize("doc", DOCS)
def test_display_math_fits_the_column(visit, doc):
    # an equation scrolls inside its box instead of spilling, so the article check passes it; a reader should not
    # have to scroll an equation at 1400 px (split long ones with aligned)
    info = visit(doc)
    wide = [f"at {WIDTH_PX} px: {m}" for m in info["math"]]
    assert not wide, f"{doc}: display equations wider than the column (split with \\begin{{aligned}}):\n" + "\n".join(wide)


@pytest.mark.parametrize("doc", DOCS)
def test_every_figure_has_a_caption(visit, doc):
    missing = [f"{f['src']}: followed by {f['next']}" for f in visit(doc)["figures"] if not f["caption"]]
    assert not missing, (f"{doc}: figures not followed by a caption paragraph 'Figure N.k. ...' (a markdown cell "
                         "starting **Figure N.k.** right after the figure's cell):\n" + "\n".join(missing))


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
