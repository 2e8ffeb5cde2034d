"""Pages that read well (issue 24): static checks of the stored notebooks, fast, no kernel.

Each chapter's code and printed output fit the book's column (88 characters a line; HTML outputs such as pandas
tables are exempt: the browser lets them scroll), every figure is followed by a numbered caption
``**Figure N.k.**`` (N the chapter number, k = 1, 2, ... in page order), no heading holds a citation (the page's
table of contents would show the raw key), chapters 1-12 end with three key takeaways, and every cell carries the
slideshow metadata that ``make slides`` turns into a deck (written by ``tools/notebooks.py slides``).
A failure names the notebook, the cell index and the offending line.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if 1 <= int(p.name[:2]) <= 12]
BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))
WIDTH = 88                                     # notebooks/ruff.toml's line-length, the column of the book
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
CAPTION = re.compile(r"\*\*Figure (\d+)\.(\d+)\.\*\*")
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
ids = [p.stem for p in NOTEBOOKS]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell.get("source", ""))


def chapter_number(path: Path) -> int:
    return int(path.name[:2])


def has_image(cell: dict) -> bool:
    return any(m in out.get("data", {}) for out in cell.get("outputs", []) for m in IMAGE_MIMES)


def text_outputs(cell: dict) -> list[tuple[int, str]]:
    """(output index, text) of the outputs the page shows as monospaced text: streams, and plain-text results that
    have no HTML form (a DataFrame renders as an HTML table; an image's ``<Figure ...>`` repr is not shown)."""
    texts = []
    for j, out in enumerate(cell.get("outputs", [])):
        if out["output_type"] == "stream":
            texts.append((j, "".join(out.get("text", ""))))
        elif out["output_type"] in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/html" in data or any(m in data for m in IMAGE_MIMES):
                continue
            texts.append((j, "".join(data.get("text/plain", ""))))
    return texts


def markdown_lines(text: str):
    """(line number, line) of markdown text outside fenced code blocks."""
    fence = None
    for k, line in enumerate(text.splitlines()):
        m = re.match(r"\s*(`{3,}|~{3,})", line)
        if m and (fence is None or m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)):
            fence = None if fence else m.group(1)
            continue
        if fence is None:
            yield k, line


def headings(text: str):
    """(line number, level, title) of the markdown headings of a cell or page, fenced code excluded."""
    for k, line in markdown_lines(text):
        m = re.match(r"(#{1,6})\s+(.*)", line)
        if m:
            yield k, len(m.group(1)), m.group(2).strip()


# -- the column -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_printed_output_fits_the_column(path):
    wide = []
    for i, cell in enumerate(cells(path)):
        for j, text in text_outputs(cell):
            wide += [f"cell {i}, output {j}, {len(line)} chars: {line[:120]}"
                     for line in text.splitlines() if len(line) > WIDTH]
    assert not wide, (f"{path.name}: {len(wide)} stored output lines over {WIDTH} characters (narrow the table, "
                      "display a DataFrame as HTML, or plot it):\n" + "\n".join(wide[:20]))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_code_fits_the_column(path):
    wide = [f"cell {i}, line {k + 1}, {len(line)} chars: {line[:120]}"
            for i, cell in enumerate(cells(path)) if cell["cell_type"] == "code"
            for k, line in enumerate(source(cell).splitlines()) if len(line) > WIDTH]
    assert not wide, (f"{path.name}: {len(wide)} code lines over {WIDTH} characters (`ruff format` the notebook, "
                      "then split long strings and comments):\n" + "\n".join(wide[:20]))


# -- figures and captions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_figure_has_a_numbered_caption(path):
    n, nb = chapter_number(path), cells(path)
    problems, k = [], 0
    for i, cell in enumerate(nb):
        if cell["cell_type"] != "code" or not has_image(cell):
            continue
        k += 1
        nxt = nb[i + 1] if i + 1 < len(nb) else None
        text = source(nxt).lstrip() if nxt is not None and nxt["cell_type"] == "markdown" else ""
        m = CAPTION.match(text)
        first = text.splitlines()[0][:80] if text else "(no markdown cell)"
        if not m:
            problems.append(f"cell {i}: figure {n}.{k} is followed by {first!r}, not '**Figure {n}.{k}.** ...'")
        elif (int(m.group(1)), int(m.group(2))) != (n, k):
            problems.append(f"cell {i + 1}: caption {m.group(0)} where figure {n}.{k} is expected: {first!r}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# -- headings and the end of a chapter ------------------------------------------------------------------------------

def cited_headings(text: str) -> list[str]:
    return [f"line {k + 1}: {'#' * level} {title}" for k, level, title in headings(text) if "{cite" in title]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_citation_in_a_heading(path):
    bad = [f"cell {i}, {h}" for i, cell in enumerate(cells(path)) if cell["cell_type"] == "markdown"
           for h in cited_headings(source(cell))]
    assert not bad, (f"{path.name}: citations in headings (the page's table of contents shows the raw key; move the "
                     "{cite} into the first sentence):\n" + "\n".join(bad))


@pytest.mark.parametrize("page", BOOK_PAGES, ids=[p.name for p in BOOK_PAGES])
def test_no_citation_in_a_heading_of_the_book_pages(page):
    bad = cited_headings(page.read_text())
    assert not bad, f"book/{page.name}: citations in headings:\n" + "\n".join(bad)


def takeaway_bullets(text: str) -> list[str]:
    """The top-level list items of the ``## Key takeaways`` section of a markdown cell (up to the next heading)."""
    items, inside = [], False
    for _, line in markdown_lines(text):
        h = re.match(r"(#{1,6})\s+(.*)", line)
        if h:
            inside = h.group(2).strip().lower() == "key takeaways"
        elif inside and re.match(r"([-*+]|\d+[.)])\s+\S", line):
            items.append(line)
    return items


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_ends_with_three_key_takeaways(path):
    nb = cells(path)
    sections = [(i, title) for i, cell in enumerate(nb) if cell["cell_type"] == "markdown"
                for _, level, title in headings(source(cell)) if level == 2]
    where = [i for i, title in sections if title.lower() == "key takeaways"]
    assert len(where) == 1, (f"{path.name}: {len(where)} '## Key takeaways' headings (cells {where}); the chapter "
                             "ends with one, three bullets, before or after the exercises")
    after = [f"cell {i}: ## {t}" for i, t in sections if i >= where[0] and t.lower() != "key takeaways"
             and not t.lower().startswith(("exercise", "homework"))]
    assert not after, (f"{path.name}: sections after the key takeaways (cell {where[0]}) other than the "
                       "exercises:\n" + "\n".join(after))
    bullets = takeaway_bullets(source(nb[where[0]]))
    assert len(bullets) == 3, (f"{path.name}, cell {where[0]}: the key takeaways have {len(bullets)} bullets, "
                               "not 3:\n" + "\n".join(b[:100] for b in bullets))


# -- slides -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_cell_has_slideshow_metadata(path):
    nb = cells(path)
    missing = [f"cell {i} ({cell['cell_type']}): {source(cell).splitlines()[0][:70] if source(cell) else ''!r}"
               for i, cell in enumerate(nb)
               if cell.get("metadata", {}).get("slideshow", {}).get("slide_type") not in SLIDE_TYPES]
    assert not missing, (f"{path.name}: {len(missing)} cells without a valid metadata.slideshow.slide_type (run "
                         f"`python tools/notebooks.py slides notebooks/{path.name}`):\n" + "\n".join(missing[:20]))
    first = nb[0]["metadata"]["slideshow"]["slide_type"]
    assert first == "slide", f"{path.name}: the title cell is a {first!r}, not a 'slide'"


def _tools():
    spec = importlib.util.spec_from_file_location("pinnkit_tools_notebooks", ROOT / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _md(text, tags=()):
    cell = nbformat.v4.new_markdown_cell(text)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _code(text="x = 1", image=False, tags=()):
    cell = nbformat.v4.new_code_cell(text)
    if image:
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                      "text/plain": "<Figure>"})]
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def test_slide_types_follow_the_structure_of_a_chapter():
    tools = _tools()
    header = tools.header_cells(ROOT / "notebooks" / "01_pinn_basics.ipynb")
    cells_ = [_md("# Title\n\nRun time: about 5 s"), *header,
              _code("import pinnkit as pk"),
              _md("## A section\n\nSome text."), _code("y = 2"),
              _md("What we saw."),                                 # text after code: a subslide
              _md("More of the\nsame thought,\nin more\nthan four\nlines."),  # text after text: continues
              _code("plot()", image=True),                         # a figure after long text: a subslide
              _md("**Figure 1.1.** What to look for."),            # caption stays with its figure
              _md("After the figure."),                            # text after a caption: a subslide
              _md("A short intro:"), _code("plot()", image=True),  # short intro opens the figure's subslide
              _md("**Figure 1.2.** Caption."),
              _md("### A subsection"), _code("hidden()", tags=["remove-cell"]),
              _md("## Key takeaways\n\n1. a\n2. b\n3. c")]
    kinds = tools.slide_types(cells_)
    assert kinds == ["slide", "skip", "skip", "-", "slide", "-", "subslide", "-", "subslide", "-", "subslide",
                     "subslide", "-", "-", "subslide", "skip", "slide"], kinds
    assert set(kinds) <= SLIDE_TYPES
    # a figure right after text of more than four lines opens its own subslide
    long_intro = _md("\n".join(["line"] * 5))
    assert tools.slide_types([_md("# T"), long_intro, _code(image=True)]) == ["slide", "-", "subslide"]
    # the header cells the tool generates are skipped by their own metadata too
    assert all(c.metadata["slideshow"]["slide_type"] == "skip" for c in header)


def test_slides_command_writes_metadata_into_a_copy(tmp_path):
    tools = _tools()
    nb = nbformat.v4.new_notebook(cells=[_md("# T"), _code(), _md("## S"), _code(image=True),
                                         _md("**Figure 1.1.** c")])
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    tools.slides([path])
    again = nbformat.read(path, as_version=4)
    assert [c.metadata["slideshow"]["slide_type"] for c in again.cells] == ["slide", "-", "slide", "-", "-"]


# -- the checks themselves --------------------------------------------------------------------------------------------

def test_checks_see_what_they_look_for():
    assert cited_headings("## Rathore et al. {cite}`x`\ntext {cite}`y`\n```\n# {cite}`code`\n```") == [
        "line 1: ## Rathore et al. {cite}`x`"]
    assert takeaway_bullets("## Key takeaways\n\n- a\n  more\n- b\n* c\n\n## Exercises\n- d") == ["- a", "- b", "* c"]
    assert len(takeaway_bullets("## Key takeaways\n1. a\n2. b\n3. c")) == 3
    cell = {"outputs": [{"output_type": "stream", "text": ["a\n", "b"]},
                        {"output_type": "execute_result", "data": {"text/plain": "df", "text/html": "<table>"}},
                        {"output_type": "display_data", "data": {"text/plain": "<Figure>", "image/png": ""}}]}
    assert text_outputs(cell) == [(0, "a\nb")]
