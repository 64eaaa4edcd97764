"""SceneKV-Bench as a picture: accuracy per question kind, one bar per row of a bench/qa.py run.

    python bench/plot_qa.py /tmp/b10.json docs/img/scenekv-bench-10min.svg [--title "..."]

Reads the ``--json`` output of bench/qa.py and writes a grouped bar chart as plain SVG (no plotting
library: the figure is a few dozen rectangles, and the repo stays free of a heavy dependency).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

KINDS = ("at", "range", "when", "captions", "recall")
COLOURS = ("#1f6feb", "#d29922", "#8957e5", "#3fb950", "#f85149", "#6e7781")


def svg(results: dict, title: str) -> str:
    rows = list(results)
    kinds = [k for k in KINDS if any(k in r["accuracy"] for r in results.values())]
    bar, gap, left, top, height = 14, 26, 48, 40, 200
    group = bar * len(rows) + gap
    width = left + group * len(kinds) + 20
    legend_y = top + height + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{legend_y + 18 * len(rows) + 10}"'
        ' font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="20" font-size="13">{escape(title)}</text>',
    ]
    for pct in (0, 25, 50, 75, 100):
        y = top + height * (1 - pct / 100)
        out.append(f'<line x1="{left - 4}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{pct}%</text>')
    for gi, kind in enumerate(kinds):
        x0 = left + gi * group + gap / 2
        for ri, row in enumerate(rows):
            acc = results[row]["accuracy"].get(kind)
            if acc is None:
                continue
            h = height * acc[0]
            x = x0 + ri * bar
            out.append(
                f'<rect x="{x}" y="{top + height - h}" width="{bar - 2}" height="{h}" '
                f'fill="{COLOURS[ri % len(COLOURS)]}"><title>{escape(row)}: {kind} {acc[0]:.0%} '
                f"of {acc[1]}</title></rect>"
            )
        out.append(
            f'<text x="{x0 + bar * len(rows) / 2}" y="{top + height + 16}" text-anchor="middle">{kind}</text>'
        )
    for ri, row in enumerate(rows):
        y = legend_y + 18 * ri
        out.append(
            f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{COLOURS[ri % len(COLOURS)]}"/>'
        )
        out.append(f'<text x="{left + 18}" y="{y}">{escape(row)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", help="bench/qa.py --json output")
    p.add_argument("out", help="the .svg to write")
    p.add_argument("--title", default="SceneKV-Bench: accuracy per question kind")
    args = p.parse_args(argv)
    results = json.loads(Path(args.json).read_text())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(svg(results, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
