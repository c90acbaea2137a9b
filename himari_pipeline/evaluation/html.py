"""One self-contained HTML page for a validation report: inline CSS, PNGs as base64 data URIs.

Nothing is loaded from anywhere: no ``http(s)://`` source, link, script or font. Sections are duck
typed: ``title`` and ``blocks``, each block a text string (a tiny Markdown subset: paragraphs,
``- `` bullets, ``**bold**`` and ```code```), a ``pandas.DataFrame`` or a plot with ``caption`` and
``png`` (bytes).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:32px}
.verdict{padding:12px 16px;border-radius:6px;color:#fff;font-size:18px;margin:12px 0}
.pass{background:#2e7d32}.fail{background:#c62828}
.verdict ul{margin:6px 0 0 0;font-size:14px}
.warn{background:#fff4e5;border-left:4px solid #ef6c00;padding:8px 12px;margin:8px 0}
table{border-collapse:collapse;font-size:12px;margin:8px 0;overflow-x:auto;display:block}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f5f5f5}tbody tr:nth-child(even){background:#fafafa}
figure{margin:10px 0}figcaption{font-size:12px;color:#555}
img{max-width:100%}code{background:#f2f2f2;padding:0 3px}.meta{color:#666;font-size:12px}
"""

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<b>\1</b>", out)


def text_to_html(text: str) -> str:
    """Paragraphs and ``- `` bullet lists of the tiny Markdown subset used by the report."""
    parts: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = [ln for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(ln.lstrip().startswith("- ") for ln in lines):
            items = "".join(f"<li>{_inline(ln.lstrip()[2:])}</li>" for ln in lines)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines))}</p>")
    return "\n".join(parts)


def _fmt(v) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(v)


def table_to_html(df: pd.DataFrame) -> str:
    return df.to_html(border=0, formatters=[_fmt] * len(df.columns), escape=True, na_rep="nan")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def block_to_html(block) -> str:
    if isinstance(block, str):
        return text_to_html(block)
    if isinstance(block, pd.DataFrame):
        return table_to_html(block)
    cap = html.escape(getattr(block, "caption", ""))
    return f'<figure><img alt="{cap}" src="{png_data_uri(block.png)}"><figcaption>{cap}</figcaption></figure>'


def render_html(
    title: str,
    passed: bool,
    reasons: Sequence[str],
    warnings: Sequence[str],
    sections: Iterable,
    meta: str = "",
) -> str:
    """The whole page: the verdict in a green (PASS) or red (FAIL) box on top, then every section."""
    cls, word = ("pass", "PASS") if passed else ("fail", "FAIL")
    why = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    body = [f"<h1>{html.escape(title)}</h1>"]
    if meta:
        body.append(f'<div class="meta">{html.escape(meta)}</div>')
    body.append(f'<div class="verdict {cls}"><b>Verdict: {word}</b>{f"<ul>{why}</ul>" if why else ""}</div>')
    body.extend(f'<div class="warn">&#9888; {html.escape(w)}</div>' for w in warnings)
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body.extend(block_to_html(b) for b in s.blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
