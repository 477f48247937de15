"""A small document model for `uquant explain` and its three renderings: plain text, Markdown, one HTML page.

A Doc is a list of blocks: headings, paragraphs, tables, preformatted formulas and (HTML only) inline SVG
pictures. Text and Markdown skip the pictures with a pointer to `--format html`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list], note: str = "") -> None:
        self.blocks.append(("table", headers, [[str(c) for c in r] for r in rows], note))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def svg(self, svgs: list[str], caption: str) -> None:
        self.blocks.append(("svg", svgs, caption))


def numeric_columns(rows: list[list[str]]) -> list[bool]:
    """Columns whose every cell is a number (or '-' / a bracketed list of numbers): those align right."""
    def num(c: str) -> bool:
        c = c.strip()
        if c in ("-", "") or (c.startswith("[") and c.endswith("]")):
            return True
        try:
            float(c)
            return True
        except ValueError:
            return False

    return [all(num(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []


def render(doc: Doc, fmt: str) -> str:
    if fmt == "text":
        return render_text(doc)
    if fmt == "markdown":
        return render_markdown(doc)
    if fmt == "html":
        return render_html(doc)
    raise ValueError(f"unknown format {fmt!r}: text, markdown or html")


def _aligned(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    right = numeric_columns(rows)

    def line(cells):
        return (indent + "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right))
                ).rstrip()

    return [line(headers), indent + "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def render_text(doc: Doc) -> str:
    out = [doc.title, "=" * len(doc.title)]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out += ["", b[2], ("=" if b[1] <= 1 else "-") * len(b[2])]
        elif kind == "p":
            out += ["", b[1]]
        elif kind == "table":
            out += [""] + _aligned(b[1], b[2]) + (["  " + b[3]] if b[3] else [])
        elif kind == "pre":
            out += [""] + ["    " + line for line in b[1].splitlines()]
        elif kind == "svg":
            out += ["", f"[{b[2]}: a picture, in --format html]"]
    return "\n".join(out) + "\n"


def _md_cell(c: str) -> str:
    return c.replace("|", "\\|")


def render_markdown(doc: Doc) -> str:
    out = [f"# {doc.title}"]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out += ["", "#" * (b[1] + 1) + " " + b[2]]
        elif kind == "p":
            out += ["", b[1]]
        elif kind == "table":
            out += ["", "| " + " | ".join(map(_md_cell, b[1])) + " |",
                    "|" + "|".join("--:" if r else "---" for r in numeric_columns(b[2]) or [False] * len(b[1]))
                    + "|"]
            out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b[2]]
            if b[3]:
                out += ["", b[3]]
        elif kind == "pre":
            out += ["", "```", b[1], "```"]
        elif kind == "svg":
            out += ["", f"*{b[2]}: a picture, in `--format html`.*"]
    return "\n".join(out) + "\n"


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td { white-space: normal; }  /* wrap at spaces only: a number is never split */
th.l, td.l { text-align: left; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: .6em; white-space: pre-wrap; overflow-wrap: anywhere; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #555; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; }
.note { font-size: .9em; color: #555; }
table { font-size: .9em; max-width: 100%; }
table.many { font-size: .78em; } table.many th, table.many td { padding: 2px 4px; }
th { overflow-wrap: normal; word-break: normal; hyphens: auto; }
"""


def render_html(doc: Doc) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", f"<h1>{e(doc.title)}</h1>"]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1] + 1}>{e(b[2])}</h{b[1] + 1}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            # wide tables wrap and shrink to the page (no sideways scrolling): cells break at spaces, or anywhere
            out.append('<div class="wide"><table class="many">' if len(b[1]) >= 9 else '<div class="wide"><table>')
            left = [' class="l"' if not r else "" for r in numeric_columns(b[2]) or [False] * len(b[1])]
            out.append("<tr>" + "".join(f"<th{a}>{e(h)}</th>" for h, a in zip(b[1], left)) + "</tr>")
            out += ["<tr>" + "".join(f"<td{a}>{e(c)}</td>" for c, a in zip(r, left)) + "</tr>" for r in b[2]]
            out.append("</table></div>")
            if b[3]:
                out.append(f'<p class="note">{e(b[3])}</p>')
        elif kind == "pre":
            out.append(f"<pre>{e(b[1])}</pre>")
        elif kind == "svg":
            out.append('<figure><div class="plots">')
            out += b[1]
            out.append(f"</div><figcaption>{e(b[2])}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# Colours of the step-function pictures (a test looks for STEP_COLOUR in a browser's screenshot).
STEP_COLOUR = "#d62728"
IDEAL_COLOUR = "#1f77b4"
REACH_COLOUR = "#ffe9a8"


def step_plot(title: str, x0: int, x1: int, y_lo: int, y_hi: int, steps: list[tuple[int, int]],
              reach: tuple[int, int], window: tuple[int, int] | None, ideal: tuple[float, float] | None,
              marker: tuple[int, int] | None, width: int = 340, height: int = 230) -> str:
    """One channel's requantization as an SVG: torch's output code (a step function of the accumulator) over
    [x0, x1], the reachable accumulators shaded, the device's window [c_lo, c_lo + W] dashed, the unrounded
    line y = ideal[0] * acc + ideal[1] thin, and one traced accumulator as a dot.

    steps: (acc, code) from which on the code holds, in increasing acc, the first at x0.
    """
    e = html.escape
    ml, mr, mt, mb = 46, 10, 22, 34
    pw, ph = width - ml - mr, height - mt - mb
    span = max(x1 - x0, 1)
    ylo, yhi = min(y_lo, y_hi - 1), y_hi

    def X(a: float) -> float:
        return ml + (min(max(a, x0), x1) - x0) / span * pw

    def Y(y: float) -> float:
        return mt + ph - (min(max(y, ylo), yhi) - ylo) / (yhi - ylo) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{width / 2:.1f}" y="14" font-size="12" text-anchor="middle" font-family="sans-serif">'
             f'{e(title)}</text>',
             f'<rect x="{X(reach[0]):.1f}" y="{mt}" width="{max(X(reach[1]) - X(reach[0]), 1.5):.1f}" height="{ph}" '
             f'fill="{REACH_COLOUR}"><title>reachable accumulators {reach[0]} .. {reach[1]}</title></rect>',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    if window is not None:
        for a in window:
            if x0 <= a <= x1:
                parts.append(f'<line x1="{X(a):.1f}" y1="{mt}" x2="{X(a):.1f}" y2="{mt + ph}" stroke="#555" '
                             'stroke-dasharray="4 3"/>')
    if ideal is not None:
        m, c = ideal  # drawn only where it lies inside the box (m > 0)
        a, b = max(x0, (ylo - c) / m), min(x1, (yhi - c) / m)
        if a < b:
            parts.append(f'<line x1="{X(a):.1f}" y1="{Y(m * a + c):.1f}" x2="{X(b):.1f}" y2="{Y(m * b + c):.1f}" '
                         f'stroke="{IDEAL_COLOUR}" stroke-width="1"/>')
    pts = []
    for i, (a, y) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else x1
        pts += [(X(a), Y(y)), (X(end), Y(y))]
    parts.append('<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>'.format(
        STEP_COLOUR, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
    if marker is not None:
        parts.append(f'<circle cx="{X(marker[0]):.1f}" cy="{Y(marker[1]):.1f}" r="4" fill="#000">'
                     f'<title>this input: acc {marker[0]} -> code {marker[1]}</title></circle>')
    fs = 'font-size="10" font-family="sans-serif"'
    parts += [f'<text x="{ml}" y="{height - 18}" {fs}>{x0}</text>',
              f'<text x="{ml + pw}" y="{height - 18}" {fs} text-anchor="end">{x1}</text>',
              f'<text x="{ml + pw / 2:.1f}" y="{height - 4}" {fs} text-anchor="middle">accumulator</text>',
              f'<text x="{ml - 4}" y="{mt + ph:.1f}" {fs} text-anchor="end">{ylo}</text>',
              f'<text x="{ml - 4}" y="{mt + 8}" {fs} text-anchor="end">{yhi}</text>',
              f'<text x="12" y="{mt + ph / 2:.1f}" {fs} text-anchor="middle" '
              f'transform="rotate(-90 12 {mt + ph / 2:.1f})">code</text>',
              "</svg>"]
    return "\n".join(parts)
