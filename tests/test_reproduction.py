"""The reproduction report quotes the chapters: every `backticked` string in its classroom column must appear in
the stored outputs of a chapter the row cites, in a cell that nbval compares (not ``nbval-ignore-output``), so the
report can neither drift from what the chapters compute nor quote a number that no test re-checks.

The report's tables are parsed as the book renders them (markdown-it with GFM tables, as MyST does), so a row that
a stray ``|`` splits into the wrong number of cells fails here instead of rendering broken.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "book" / "reproduction.md"
HEADER = ["claim", "paper", "ours, classroom", "ours, paper setting", "verdict", "chapter"]
BEGIN, END = "<!-- paper-setting records: begin -->", "<!-- paper-setting records: end -->"
STORE = ROOT / "results" / "pinnkit.sqlite"
IGNORE = "nbval-ignore-output"


def _cells(tokens: list, start: int, close: str) -> tuple[list[tuple[str, list[str]]], int]:
    """The (text, code spans) of each cell of the row that starts at ``tokens[start]``."""
    cells, i = [], start
    while tokens[i].type != close:
        if tokens[i].type == "inline":
            kids = tokens[i].children or []
            cells.append((tokens[i].content, [k.content for k in kids if k.type == "code_inline"]))
        i += 1
    return cells, i


def tables(text: str) -> list[tuple[list[str], list[list[tuple[str, list[str]]]]]]:
    """Every table of ``text`` as (header, rows), each row a list of (cell text, code spans)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    out, i = [], 0
    while i < len(tokens):
        if tokens[i].type == "table_open":
            header, rows = None, []
            while tokens[i].type != "table_close":
                if tokens[i].type == "tr_open":
                    cells, i = _cells(tokens, i, "tr_close")
                    if header is None:
                        header = [c[0] for c in cells]
                    else:
                        rows.append(cells)
                i += 1
            out.append((header, rows))
        i += 1
    return out


def table_lines(text: str) -> list[str]:
    """The raw lines of the report that belong to a table (start with ``|``)."""
    return [line for line in text.splitlines() if line.lstrip().startswith("|")]


def compared_outputs(path: Path) -> str:
    """All text output of the cells of a notebook that nbval compares (the ignored ones left out)."""
    nb = json.loads(path.read_text())
    text = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code" or IGNORE in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")))
            text.append("".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


FULL_TEXT = REPORT.read_text()
# the claim tables; the generated block of paper-setting records (from the results store) is checked separately
REPORT_TEXT = FULL_TEXT.split(BEGIN)[0] + (FULL_TEXT.split(END, 1)[1] if END in FULL_TEXT else "")
GENERATED = FULL_TEXT.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in FULL_TEXT else ""
TABLES = tables(REPORT_TEXT)
ROWS = [row for _, rows in TABLES for row in rows]


def test_every_table_has_the_report_columns():
    assert TABLES, "the report has no table"
    for header, _ in TABLES:
        assert header == HEADER, f"a table's header is {header}, expected {HEADER}"


def raw_cells(line: str) -> list[str]:
    """The cells of one table line split as GFM does: on every unescaped ``|``, even inside a code span."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_no_row_is_split_by_a_stray_pipe():
    """Every table line has exactly six cells; a ``|`` inside a cell (even in backticks) would split it."""
    lines = table_lines(REPORT_TEXT)
    assert lines
    for line in lines:
        assert len(raw_cells(line)) == 6, (f"{line[:60]!r}... has {len(raw_cells(line))} cells, not 6: "
                                           "write \\| or ‖ for a '|' inside a cell")


def test_report_has_rows_for_every_paper():
    for key in ("rathore2024challenges", "rowan2025newton", "wang2025alignment", "rowan2026landscapes"):
        assert key in REPORT_TEXT
    assert len(ROWS) >= 12


@pytest.mark.parametrize("row", ROWS, ids=[r[0][0][:40] for r in ROWS])
def test_quoted_numbers_appear_in_a_compared_cell_of_the_cited_chapter(row):
    (claim, _), _, (ours, quoted), _, (verdict, _), (chapter, _) = row
    assert verdict.strip() and verdict.strip() != "—", f"{claim}: no verdict"
    assert "one seed" in verdict or "seeds" in ours + verdict or not quoted, (
        f"{claim}: say in the verdict whether it rests on one seed or on several (and how many)")
    links = re.findall(r"\(\.\./(notebooks/[^)]+\.ipynb)\)", chapter)
    if not quoted:
        assert ours.strip() == "—", f"{claim}: the classroom column quotes no number (write — if there is none)"
        return
    assert links, f"{claim}: cite the chapter that computes {quoted}"
    for link in links:
        assert (ROOT / link).exists(), f"{claim}: {link} does not exist"
    text = "\n".join(compared_outputs(ROOT / link) for link in links)
    for q in quoted:
        assert q in text, (f"{claim}: {q!r} is not in an nbval-compared output of {', '.join(links)} "
                           f"(a number quoted from a nbval-ignore-output cell is not tested)")


def test_paper_setting_block_is_the_store():
    """The block of paper-setting records is exactly what `python -m pinnkit.experiments show --markdown` prints
    for the committed store, so the report cannot drift from the records."""
    from pinnkit.experiments import Store, report

    assert BEGIN in FULL_TEXT and END in FULL_TEXT, "the report lacks its block of paper-setting records"
    assert STORE.exists(), "results/pinnkit.sqlite (the committed results store) is missing"
    assert GENERATED == report(Store(STORE).records()).strip(), (
        "book/reproduction.md's paper-setting block differs from the store; regenerate it with "
        "python -m pinnkit.experiments show --markdown")


@pytest.mark.parametrize("row", ROWS, ids=[r[0][0][:40] for r in ROWS])
def test_paper_setting_quotes_are_in_the_store(row):
    """A number quoted in the 'ours, paper setting' column must come from the store (the generated block)."""
    (claim, _), _, _, (paper_col, quoted), _, _ = row
    for q in quoted:
        assert q in GENERATED, f"{claim}: paper-setting quote {q!r} is not in the records of results/pinnkit.sqlite"


def test_the_parser_sees_a_stray_pipe():
    """Negative control: a pipe inside a code span splits the row (GFM), and the checks above catch it."""
    bad = "| c | p | `a |b` | — | v | ch |"
    assert len(raw_cells(bad)) == 7
    good = bad.replace("`a |b`", r"`a \|b`")
    assert len(raw_cells(good)) == 6
    table = "| " + " | ".join(HEADER) + " |\n|---|---|---|---|---|---|\n" + good + "\n"
    (_, rows), = tables(table)
    assert rows[0][2][1] == ["a |b"]
