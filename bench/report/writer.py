"""What a report section holds, and the one writer that renders sections to Markdown and HTML.

A section function (bench.report.sections) returns a Section: a title and blocks (paragraphs,
bullet lists, tables, images) plus the side files it owns (per-dataset tables, CSVs). The writer
saves figures and side files atomically under the report folder and renders the same blocks twice,
so report.md and index.html cannot drift apart. The HTML page loads nothing from the network.
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

from bench.report import plots
from bench.report.tables import to_html, to_markdown
from bench.store import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple


@dataclass(frozen=True)
class Table:
    frame: "pd.DataFrame"
    html_frame: "pd.DataFrame | None" = None  # cells already HTML (bold); default: escaped frame


@dataclass(frozen=True)
class Image:
    name: str  # file name of the PNG beside the report
    alt: str
    figure: Any  # matplotlib Figure, saved (and closed) by the writer
    key: str  # name in Report.figures


Block = Union[Paragraph, Bullets, Table, Image]


@dataclass(frozen=True)
class Section:
    title: str
    level: int = 2
    blocks: tuple = ()
    files: tuple = ()  # (file name, text) written beside the report


def section(title: str, *blocks: Block | None, level: int = 2,
            files: Sequence[tuple[str, str]] = ()) -> Section:
    """A Section from the blocks that are not None (so section functions can say `x if c else
    None`)."""
    return Section(title, level, tuple(b for b in blocks if b is not None), tuple(files))


@dataclass
class Report:
    out: Path
    files: list[Path]
    figures: dict  # name -> Figure (closed after saving; kept for inspection)
    markdown: str
    sections: list = field(default_factory=list)


def write_report(sections: Sequence[Section], out: Path, title: str) -> Report:
    """Side files and figures first, then report.md and index.html from the same blocks."""
    files: list[Path] = []
    figures: dict = {}

    def write(name: str, text: str) -> None:
        atomic_write_bytes(out / name, text.encode())
        files.append(out / name)

    md: list[str] = []
    body: list[str] = []
    for sec in sections:
        for name, text in sec.files:
            write(name, text)
        md.append(f"{'#' * sec.level} {sec.title}\n")
        body.append(f"<h{sec.level}>{_h(sec.title)}</h{sec.level}>")
        for block in sec.blocks:
            if isinstance(block, Image):
                files.append(plots.save(block.figure, out / block.name))
                figures[block.key] = block.figure
            md.append(to_markdown_block(block))
            body.append(to_html_block(block))
    text = "\n".join(md)
    write("report.md", text)
    write("index.html", page(title, "\n".join(body)))
    return Report(out, files, figures, text, list(sections))


def to_markdown_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return block.text + "\n"
    if isinstance(block, Bullets):
        return "".join(f"- {item}\n" for item in block.items)
    if isinstance(block, Table):
        return to_markdown(block.frame) + "\n"
    return f"![{block.alt}]({block.name})\n"


def to_html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_h(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_h(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return to_html(block.html_frame if block.html_frame is not None
                       else escaped(block.frame))
    return f'<p><img src="{_h(block.name)}" alt="{_h(block.alt)}"></p>'


def _h(text: object) -> str:
    return _html.escape(str(text))


def escaped(frame: "pd.DataFrame") -> "pd.DataFrame":
    out = frame.map(_h) if hasattr(frame, "map") else frame.applymap(_h)
    out.index = [_h(i) for i in frame.index]
    out.index.name = frame.index.name
    return out


def page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_h(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
thead th {{ background: #f2f2f2; }}
img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""
