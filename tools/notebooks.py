"""Maintain the chapters: the generated header cells, and executing them top to bottom.

    python tools/notebooks.py header            # (re)write badge + setup cell in every notebook
    python tools/notebooks.py execute [NB ...] [--record]   # run in place in a fresh kernel, classroom preset
                                                # (all notebooks, or the named ones with --record: also records
                                                # their run times in book/runtimes.md and writes them into each
                                                # chapter's "Run time" line)
    python tools/notebooks.py slides [NB ...]   # (re)write every cell's slideshow metadata (all notebooks, or the
                                                # named ones), so that `make slides` gives one deck per chapter

The Colab badge and the setup cell come from the one repository setting in ``book/_config.yml``.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEADER_TAG = "pinnkit-header"


def repository() -> tuple[str, str]:
    text = (ROOT / "book" / "_config.yml").read_text()
    block = text.split("\nrepository:", 1)[1]
    url = re.search(r"url:\s*(\S+)", block).group(1).rstrip("/")
    branch = re.search(r"branch:\s*(\S+)", block).group(1)
    return url, branch


def header_cells(path: Path) -> list:
    url, branch = repository()
    slug = url.split("github.com/", 1)[1]
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{path.name}"
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})")
    setup = nbformat.v4.new_code_cell(
        "# In Colab: install pinnkit (keeps Colab's torch), enable widgets; locally: nothing.\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q \"pinnkit @ git+{url}@{branch}\"\n"
        "    from google.colab import output\n"
        "\n"
        "    output.enable_custom_widget_manager()")   # as `ruff format` writes it (notebooks/ruff.toml)
    for cell in (badge, setup):
        cell.metadata["tags"] = [HEADER_TAG]
        cell.metadata["slideshow"] = {"slide_type": "skip"}   # as `slides` sets it: not part of a deck
    setup.metadata["tags"].append("remove-cell")   # the rendered book has its own launch button
    badge.metadata["tags"].append("remove-cell")
    return [badge, setup]


def _shown(path: Path) -> Path:
    """A path as printed: relative to the repository where it lies in it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def header(paths: list[Path]) -> None:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        body = [c for c in nb.cells if HEADER_TAG not in c.metadata.get("tags", [])]
        # the title cell stays first; header goes right after it
        nb.cells = body[:1] + header_cells(path) + body[1:]
        nbformat.write(nb, path)
        print(f"header: {_shown(path)}")


RUN_TIME = re.compile(r"Run time: about \d+ s \([^)]*\)")


def run_time_line(seconds: float) -> str:
    """The first cell's run-time sentence for a measured wall time (rounded up to 5 s)."""
    return f"Run time: about {max(5, 5 * math.ceil(seconds / 5))} s (classroom preset, one torch thread, 2-core CPU)"


def set_run_time(nb: nbformat.NotebookNode, seconds: float) -> None:
    """Write the measured run time into the title cell's ``Run time: about N s (...)`` sentence."""
    title = nb.cells[0]
    if not RUN_TIME.search(title.source):
        raise ValueError("the first cell has no 'Run time: about N s (...)' sentence (see CONTRIBUTING.md)")
    title.source = RUN_TIME.sub(run_time_line(seconds), title.source, count=1)


def execute(paths: list[Path], record: Path | None = None) -> None:
    from nbclient import NotebookClient
    os.environ["PINNKIT_PRESET"] = "classroom"
    os.environ["PINNKIT_PROGRESS"] = "0"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("PINNKIT_DEVICE", "cpu")
    os.environ.setdefault("PINNKIT_THREADS", "1")  # the thread count the tests compare at (Makefile)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # waiting OpenMP threads sleep: same outputs, less CPU
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                       ).execute()
        nbformat.write(nb, path)
        seconds = time.perf_counter() - t
        if record is not None:
            set_run_time(nb, seconds)
            nbformat.write(nb, path)
        rows.append(f"| `{path.name}` | {seconds:.0f} |")
        print(f"executed {path.relative_to(ROOT)} in {seconds:.0f} s")
    if record is not None:   # merge: chapters not run now keep their measured times
        row = re.compile(r"^\| `([^`]+)` \| (\d+) \|$", flags=re.M)
        known = dict(row.findall(record.read_text())) if record.exists() else {}
        known.update(dict(row.findall("\n".join(rows))))
        body = "\n".join(f"| `{name}` | {sec} |" for name, sec in sorted(known.items()))
        record.write_text("| chapter | seconds (wall, fresh kernel) |\n|---|---|\n" + body + "\n")


SLIDE_TYPES = ("slide", "subslide", "fragment", "skip", "notes", "-")
REMOVED_CELL = {"remove-cell", "remove_cell"}
FIGURE_CAPTION = re.compile(r"\*\*Figure \d+\.\d+\.\*\*")
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _has_image(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and any(
        m in out.get("data", {}) for out in cell.get("outputs", []) for m in IMAGE_MIMES)


def slide_types(cells: list) -> list[str]:
    """The reveal.js slide type of every cell, from the cell's role in the chapter.

    * the title cell and every ``#``/``##`` heading start a slide (the chapter's sections run left to right);
    * a ``###`` heading, text that follows code or a figure's caption, and a figure start a subslide (down the
      section's column), so that no slide holds more than one block of code and its text;
    * a figure's caption (``**Figure N.k.**``) stays on the figure's slide; so does a short (<= 4 lines) text cell
      right before a figure, which then opens the subslide instead of the figure;
    * the generated header cells and cells tagged ``remove-cell`` are skipped (the book does not show them either);
    * everything else continues the current slide (``-``). No fragments: a deck steps by slides, not by cells.
    """
    types: list[str] = []
    prev_i = -1                              # the index of the previous cell that is part of the deck
    for i, cell in enumerate(cells):
        tags = set(cell.metadata.get("tags", []))
        src = cell.source.lstrip()
        md = cell.cell_type == "markdown"
        prev = cells[prev_i] if prev_i >= 0 else None
        if HEADER_TAG in tags or tags & REMOVED_CELL:
            types.append("skip")
            continue
        if i == 0 or (md and re.match(r"#{1,2}\s", src)):
            kind = "slide"
        elif md and re.match(r"#{3,}\s", src):
            kind = "subslide"
        elif md and FIGURE_CAPTION.match(src):
            kind = "-"
        elif md:   # text after code, or after a figure's caption, opens a subslide
            after = prev is not None and (prev.cell_type == "code" or FIGURE_CAPTION.match(prev.source.lstrip()))
            kind = "subslide" if after else "-"
        elif _has_image(cell):
            short_intro = (prev is not None and prev.cell_type == "markdown"
                           and not FIGURE_CAPTION.match(prev.source.lstrip())
                           and len(prev.source.strip().splitlines()) <= 4)
            kind = "-" if short_intro else "subslide"
            if short_intro and types[prev_i] == "-":   # the short text opens the figure's subslide instead
                types[prev_i] = "subslide"
        else:
            kind = "-"
        types.append(kind)
        prev_i = i
    return types


def slides(paths: list[Path]) -> None:
    """Write ``metadata.slideshow.slide_type`` into every cell of each notebook (see :func:`slide_types`)."""
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        kinds = slide_types(nb.cells)
        for cell, kind in zip(nb.cells, kinds):
            cell.metadata["slideshow"] = {"slide_type": kind}
        nbformat.write(nb, path)
        counts = {k: kinds.count(k) for k in SLIDE_TYPES if k in kinds}
        print(f"slides: {_shown(path)} {counts}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    paths = [Path(a).resolve() for a in args] or NOTEBOOKS
    if cmd == "header":
        header(paths)
    elif cmd == "execute":
        record = not args or "--record" in args      # all notebooks, or named ones with --record
        paths = [Path(a).resolve() for a in args if a != "--record"] or NOTEBOOKS
        execute(paths, record=ROOT / "book" / "runtimes.md" if record else None)
    elif cmd == "slides":
        slides(paths)
    else:
        print(__doc__)
        sys.exit(2)
