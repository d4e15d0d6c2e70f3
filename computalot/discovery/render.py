"""Markdown to one self-contained HTML page: inline CSS, a nav bar, a table of contents.

Kept apart from :mod:`computalot.discovery.site` (which decides *what* is served) so the page design
can change without touching loading, caching or the route tables. Raw HTML in the Markdown is
disabled: the docs need none, and text substituted into them (the base URL) stays inert.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)
"""Agent skill files open with YAML metadata; it is for agents, not for the rendered page."""


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _markdown() -> MarkdownIt:
    # Raw HTML off: the docs need none, and it keeps anything odd in the text inert.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render_markdown(text: str) -> tuple[str, list[tuple[int, str, str]], str]:
    """HTML body, table of contents ``[(level, id, title)]`` for h2/h3, and the first h1."""
    md = _markdown()
    tokens = md.parse(_FRONT_MATTER.sub("", text, count=1))
    toc: list[tuple[int, str, str]] = []
    taken: set[str] = set()
    title = ""
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        content = tokens[i + 1].content
        level = int(token.tag[1])
        token.attrSet("id", _slug(content, taken))
        if level == 1 and not title:
            title = content
        elif level in (2, 3):
            toc.append((level, str(token.attrGet("id")), content))
    return md.renderer.render(tokens, md.options, {}), toc, title


def render_page(text: str, nav: list[tuple[str, str]], fallback_title: str) -> str:
    """The full HTML document for Markdown ``text``; ``nav`` is ``[(href, label)]``."""
    body, toc, title = render_markdown(text)
    e = html.escape
    links = "".join(f'<a href="{e(href)}">{e(label)}</a>' for href, label in nav)
    items = "".join(
        f'<li class="l{level}"><a href="#{e(anchor)}">{e(label)}</a></li>'
        for level, anchor, label in toc
    )
    return _TEMPLATE.format(
        title=e(title or fallback_title), nav=links, toc=items, body=body, css=_CSS
    )


_CSS = """
*{box-sizing:border-box}body{margin:0;font:16px/1.6 system-ui,-apple-system,Segoe UI,sans-serif;
color:#1d232b;background:#fbfbfc}header{background:#1d232b;padding:.6rem 1.5rem}
header a{color:#e6eaf0;margin-right:1.1rem;text-decoration:none;font-size:.92rem}
header a:hover{text-decoration:underline}.wrap{display:flex;max-width:1280px;margin:0 auto}
nav.toc{flex:0 0 260px;position:sticky;top:0;align-self:flex-start;max-height:100vh;
overflow-y:auto;padding:1.5rem 1rem;font-size:.86rem;border-right:1px solid #e3e6ea}
nav.toc ul{list-style:none;margin:0;padding:0}nav.toc li.l3{padding-left:1rem}
nav.toc a{color:#44505e;text-decoration:none}nav.toc a:hover{color:#0b5fff}
main{flex:1;min-width:0;padding:1.5rem 2.5rem 4rem}h1,h2,h3{line-height:1.25}
h2{margin-top:2.2rem;padding-bottom:.3rem;border-bottom:1px solid #e3e6ea}a{color:#0b5fff}
code{font:.88em/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f4;
padding:.1em .3em;border-radius:4px}pre{background:#1d232b;color:#e6eaf0;padding:1rem;
border-radius:6px;overflow-x:auto}pre code{background:none;padding:0;color:inherit}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem;display:block;overflow-x:auto}
th,td{border:1px solid #d9dde2;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f4}blockquote{margin:1rem 0;padding:.2rem 1rem;border-left:4px solid #0b5fff;
background:#eef4ff}@media(max-width:900px){.wrap{display:block}nav.toc{position:static;
max-height:none;border-right:0;border-bottom:1px solid #e3e6ea}main{padding:1rem}}
"""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Computalot</title><style>{css}</style></head>
<body><header>{nav}</header>
<div class="wrap"><nav class="toc"><strong>On this page</strong><ul>{toc}</ul></nav>
<main>{body}</main></div></body></html>
"""
