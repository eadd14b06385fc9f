"""The document model as one self-contained HTML file (CSS inlined, images as data URIs) and a
PDF printed from it with WeasyPrint (page numbers and running headers from the CSS's @page
rules). The template only walks the model: it knows how a paragraph, table, figure, section and
code block look, not what the thesis says."""

from __future__ import annotations

from pathlib import Path

import jinja2

from segsweep.report.document import Document

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "thesis.html.j2"


def render_html(document: Document, templates: Path = TEMPLATES) -> str:
    """The numbered document as one HTML string."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(document=document)


def render_pdf(html: str, out: Path) -> int:
    """Print the HTML to PDF with WeasyPrint; returns the number of pages."""
    import weasyprint  # only here: importing it loads fonts, which the HTML path does not need

    rendered = weasyprint.HTML(string=html).render()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    rendered.write_pdf(out)
    return len(rendered.pages)
