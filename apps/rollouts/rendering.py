"""Model output as safe HTML: Markdown with math left for KaTeX, then sanitized.

Model output is untrusted. markdown-it runs with raw HTML off (a `<script>` in
a completion comes out as text), and nh3 (ammonia) then keeps only a safelist
of tags, with no images (a completion could make every reader's browser fetch a
URL) and no styles. Math becomes `<span class="math inline">`,
`<span class="math display">` or `<div class="math block">` with the TeX as text; static/js/math.js typesets
them with the locally served KaTeX. Long text is cut before parsing so that a
5 MB completion costs the same as a short one; the full text is one click away
as plain text.
"""

from dataclasses import dataclass

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.dollarmath import dollarmath_plugin

SHOWN_CHARS = 20_000
SHOWN_LINES = 400

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "span", "div",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
ALLOWED_CLASSES = {"span": {"math", "inline", "display"}, "div": {"math", "block"}}


@dataclass
class Shown:
    html: SafeString
    truncated: bool
    total_chars: int
    total_lines: int


def shown_text(text: str) -> tuple[str, bool]:
    """The first SHOWN_CHARS characters and SHOWN_LINES lines of `text`, and whether anything was cut."""
    cut = text[:SHOWN_CHARS]
    newline = -1
    for _ in range(SHOWN_LINES):
        newline = cut.find("\n", newline + 1)
        if newline == -1:
            break
    else:
        cut = cut[:newline]
    return cut, len(cut) < len(text)


def render_markdown(text: str) -> Shown:
    cut, truncated = shown_text(text)
    html = nh3.clean(
        _markdown.render(cut), tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, allowed_classes=ALLOWED_CLASSES,
        filter_style_properties={"text-align"}, url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )
    return Shown(mark_safe(html), truncated, len(text), text.count("\n") + 1)


def _bracket_math(state, silent: bool) -> bool:
    r"""\( … \) and \[ … \] (what most models write) become the same tokens as $ … $ and $$ … $$."""
    opener = state.src[state.pos:state.pos + 2]
    if opener not in ("\\(", "\\["):
        return False
    closer = "\\)" if opener == "\\(" else "\\]"
    # Once a closer is missing after some point it is missing after every later opener too:
    # remembering that keeps 10,000 unclosed "\(" linear.
    missing_after = state.env.setdefault("math_closer_missing_after", {})
    if state.pos >= missing_after.get(closer, len(state.src)):
        return False
    end = state.src.find(closer, state.pos + 2)
    if end == -1:
        missing_after[closer] = state.pos
        return False
    if not silent:
        token = state.push("math_inline" if opener == "\\(" else "math_inline_double", "math", 0)
        token.content = state.src[state.pos + 2:end].strip()
        token.markup = opener
    state.pos = end + 2
    return True


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").enable("strikethrough")
    md.use(dollarmath_plugin, double_inline=True, allow_space=True, allow_digits=False)
    md.inline.ruler.before("escape", "bracket_math", _bracket_math)
    # Display math inside a paragraph: a <div> there would be split off the paragraph by the sanitizer.
    md.add_render_rule("math_inline_double", lambda self, tokens, idx, options, env:
                       f'<span class="math display">{escapeHtml(tokens[idx].content)}</span>')
    return md


_markdown = _build()
