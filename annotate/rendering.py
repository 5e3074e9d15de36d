"""The one renderer of text that people read as Markdown: model output (untrusted) and guidelines.

Invariants (what the tests in tests/test_rendering.py hold it to):
- CommonMark + GFM (tables, strikethrough, task lists, autolinks) by markdown-it-py, whose
  parsers are linear in the input; single newlines are kept as line breaks; raw HTML is shown
  as text; math (`\\( \\)`, `\\[ \\]`, `$...$`, `$$...$$`) is passed through as written, in a
  `.math` element, never read as Markdown (static/js/math.js typesets it with the vendored
  KaTeX in the browser); fenced code with a known language is highlighted by
  Pygments; the result goes through nh3 (no scripts, handlers, styles or javascript: links).
- Images are not loaded unless the caller allows them (a project's opt-in): each becomes a
  placeholder naming the host it would come from.
- Bidi overrides and invisible control characters are shown as a visible marker, and an
  override reaches no text around it (the text stored is never changed: display only).
- Nothing raises: text over MAX_CHARS, a render past BUDGET_S, or nesting deep enough for a
  RecursionError is shown as escaped plain text with a note that says why.
- Each (text, options) is rendered once per cache lifetime: results (fallbacks included) are
  kept in the "rendered" cache under a hash of the content, so a page load does not render.
"""

from __future__ import annotations

import contextvars
import hashlib
import html
import re
import time
import unicodedata
from urllib.parse import urlsplit

import nh3
from django.core.cache import caches
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.parser_block import ParserBlock
from markdown_it.renderer import RendererHTML
from markdown_it.rules_block import StateBlock
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from config.runtime import gc_paused

# Bump when the output for the same text changes: cached renderings of older versions are unused.
VERSION = "2"
# Longer text is shown as plain text (a degenerate generation, not something to format).
MAX_CHARS = 200_000
# Plain text past this many characters is behind a "Show the other N KB" (see plain_text_html).
PLAIN_SHOWN_CHARS = 100_000
# Wall-clock seconds one rendering may take before it gives up for plain text (markdown-it-py
# formats ~200-500 KB/s on an idle core: a 100 KB response fits).
BUDGET_S = 0.6
# A text that ran out of budget is shown as plain text for this long before it is tried again.
SLOW_RETRY_S = 300
# Code highlighted per rendering, at most (Pygments takes ~20 µs per token here): the blocks past
# it are shown unhighlighted.
HIGHLIGHT_MAX_CHARS = 8_000

URL_SCHEMES = {"http", "https", "mailto"}
_TAGS = nh3.ALLOWED_TAGS | {"input"}
_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "title", "referrerpolicy", "loading"},
    "span": {"class", "title"},
    "div": {"class"},
    "pre": {"class"},
    "code": {"class"},
    "ul": {"class"},
    "li": {"class"},
    "th": {"class"},
    "td": {"class"},
    "input": {"class", "type", "checked", "disabled"},
}
_FORMATTER = HtmlFormatter(nowrap=True)

# Characters that change how the text around them is shown without being seen: bidi embeddings,
# overrides, isolates and marks, zero-width spaces and joiners that are not part of an emoji or
# a script (ZWJ and ZWNJ are left alone), the byte order mark, and C0/C1 controls (not tab or
# newline).
_BIDI_NAMES = {
    "\u061c": "ALM",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
}
_CONTROLS = (
    "".join(_BIDI_NAMES)
    + "\u200b\u2060-\u2064\ufeff\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
)
_CONTROL = re.compile(f"[{_CONTROLS}]")
_TAG_OR_CONTROL = re.compile(f'(<(?:[^>"]|"[^"]*")*>)|([{_CONTROLS}])')


# Blocks nested deeper than this (lists, quotes) are not formatted: markdown-it would drop what
# is inside them, and Python's recursion limit is near past ~100.
MAX_NESTING = 40


class _TooSlow(Exception):
    pass


class _TooDeep(Exception):
    pass


_ENV: contextvars.ContextVar[dict] = contextvars.ContextVar("render_env")


def render_markdown(text: str, *, images: bool = False) -> SafeString:
    """`text` as sanitised HTML (see the module's invariants). `images`: load images from
    http(s) addresses instead of showing a placeholder."""
    return _cached(f"md{int(images)}", text or "", lambda text: _render(text, images=images))


def render_raw(text: str) -> SafeString:
    """`text` as written (escaped, for a <pre>), with its control characters marked."""
    return _cached("raw", text or "", _escaped)


def _cached(what: str, text: str, render) -> SafeString:
    digest = hashlib.sha256(f"{VERSION}:{what}:{text}".encode("utf-8", "surrogatepass"))
    key = f"{what}:{digest.hexdigest()}"
    cache = caches["rendered"]
    rendered = cache.get(key)
    if rendered is None:
        rendered = render(_encodable(text))
        # Too slow may be the machine's moment, not the text: tried again after a while.
        slow = rendered.startswith(_TOO_SLOW)
        cache.set(key, rendered, timeout=SLOW_RETRY_S if slow else None)
    return mark_safe(rendered)


def _encodable(text: str) -> str:
    # A lone surrogate (no import or API lets one in, the admin might) cannot be sent as UTF-8:
    # shown as U+FFFD, one code point for one, so offsets stay the same.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _render(text: str, *, images: bool) -> str:
    if len(text) > MAX_CHARS:
        size = len(text.encode("utf-8", "surrogatepass"))
        return plain_text_html(text, f"too long to format ({_size(size)})")
    env = {"deadline": time.perf_counter() + BUDGET_S, "images": images, "highlighted": 0}
    _ENV.set(env)
    # The parse makes ~10 objects per character: the cyclic garbage collector's passes over
    # the whole heap spent the budget (bench/README.md, "Rendering").
    try:
        with gc_paused():
            body = _MD.render(text, env)
        if time.perf_counter() > env["deadline"]:
            raise _TooSlow
    except _TooSlow:
        return plain_text_html(text, _TOO_SLOW_WHY)
    except (_TooDeep, RecursionError):
        return plain_text_html(text, "nested too deeply to format")
    body = nh3.clean(
        body,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return mark_controls(body)


def is_plain_text(rendered: str) -> bool:
    """Whether a rendering is the plain-text fallback (the text as written already)."""
    return rendered.startswith(_NOTE)


_NOTE = '<p class="render-note">'
_TOO_SLOW_WHY = "too slow to format"
_TOO_SLOW = f"{_NOTE}Shown as plain text: {_TOO_SLOW_WHY}."


def plain_text_html(text: str, why: str) -> str:
    """Escaped text in a pre-wrapped block, with a note saying why it is not formatted. Past
    PLAIN_SHOWN_CHARS the rest is in a closed <details>: the browser lays out text only when
    it is shown (Chromium takes ~1.5 s for a 1 MB line, with any CSS)."""
    note = f"{_NOTE}Shown as plain text: {html.escape(why)}.</p>"
    shown, rest = text[:PLAIN_SHOWN_CHARS], text[PLAIN_SHOWN_CHARS:]
    body = f'<div class="plain-text">{_escaped(shown)}</div>'
    if rest:
        size = _size(len(rest.encode("utf-8", "surrogatepass")))
        body += (
            f'<details class="plain-rest"><summary>Show the other {size}</summary>'
            f'<div class="plain-text">{_escaped(rest)}</div></details>'
        )
    return note + body


def _escaped(text: str) -> str:
    # Escaped text has no tags: only its control characters to mark (a scan, no tag parsing).
    return _CONTROL.sub(_marker, html.escape(text))


def mark_controls(markup: str) -> str:
    """HTML with each invisible control character of its text wrapped in a visible marker: an
    element isolated for bidi (an override inside it reaches nothing) whose label is generated
    by CSS, so the element's text is still the source text, character for character."""
    if not _CONTROL.search(markup):
        return markup
    return _TAG_OR_CONTROL.sub(_marker, markup)


def _marker(match: re.Match) -> str:
    if match.lastindex == 1:
        return match.group(1)
    char = match.group(match.lastindex or 0)
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "control character")
    label = _BIDI_NAMES.get(char, code)
    return f'<span class="ctl" data-ctl="{label}" title="{code} {name.lower()}">{char}</span>'


def _size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{size / 1000:.0f} KB"


# markdown-it: the parser and our rules ------------------------------------------------------


# The budget is checked at each step of the three phases (a block token, an inline position, a
# token rendered) and between the core passes: a rendering past its deadline stops there instead
# of finishing.


def _check_deadline(state, *args) -> bool:
    # A rule that never matches: first in the block and inline chains, after each core rule.
    _check(state.env)
    return False


def _check(env) -> None:
    if time.perf_counter() > env["deadline"]:
        raise _TooSlow


class _StateBlock(StateBlock):
    def push(self, ttype, tag, nesting):
        # One block rule may push many tokens (a table's rows): checked per token.
        _check(self.env)
        if nesting == 1 and self.level + 1 >= MAX_NESTING:
            raise _TooDeep
        return super().push(ttype, tag, nesting)


class _ParserBlock(ParserBlock):
    def parse(self, src, md, env, outTokens):
        if not src:
            return None
        state = _StateBlock(src, md, env, outTokens)
        self.tokenize(state, state.line, state.lineMax)
        return state.tokens


class _Renderer(RendererHTML):
    def renderInline(self, tokens, options, env):  # noqa: N802 (markdown-it's API)
        _check(env)
        return super().renderInline(tokens, options, env)

    def renderToken(self, tokens, idx, options, env):  # noqa: N802
        _check(env)
        return super().renderToken(tokens, idx, options, env)


def _highlight(code: str, lang: str, attrs: str) -> str:
    # markdown-it passes no env to `highlight`: the rendering's env comes through a ContextVar.
    env = _ENV.get()
    if not lang or env["highlighted"] + len(code) > HIGHLIGHT_MAX_CHARS:
        return ""
    env["highlighted"] += len(code)
    try:
        lexer = get_lexer_by_name(lang.split()[0], stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return pygments_highlight(code, lexer, _FORMATTER)


_MATH_CLOSE = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def _math(renderer, tokens, idx, options, env) -> str:
    token = tokens[idx]
    source = token.markup + token.content + _MATH_CLOSE.get(token.markup, token.markup)
    tag = "div" if token.block else "span"
    return f'<{tag} class="math">{html.escape(source)}</{tag}>'


def _image(renderer, tokens, idx, options, env) -> str:
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = "".join(child.content for child in token.children or [])
    if env.get("images") and urlsplit(src).scheme in ("http", "https"):
        return (
            f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" '
            'referrerpolicy="no-referrer" loading="lazy">'
        )
    host = urlsplit(src).hostname
    where = f"host {host}" if host else "a relative address"
    words = f"image from {where}, not loaded" + (f": {alt}" if alt else "")
    return f'<span class="image-blocked" title="{html.escape(src)}">[{html.escape(words)}]</span>'


def _table_alignment(state) -> None:
    # Tables align cells with style="text-align: ..." (which nh3 and the CSP drop): a class.
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrGet("style") or ""
            if style.startswith("text-align:"):
                token.attrs.pop("style")
                token.attrSet("class", "align-" + style.removeprefix("text-align:").strip())


def _build() -> MarkdownIt:
    md = MarkdownIt(
        "gfm-like",
        {"breaks": True, "html": False, "highlight": _highlight, "maxNesting": MAX_NESTING},
        renderer_cls=_Renderer,
    )
    block = _ParserBlock()
    block.ruler = md.block.ruler
    md.block = block
    md.use(tasklists_plugin)
    md.use(texmath_plugin, delimiters="brackets")
    # "$5 and $10" stays text: a $ opens math only before a non-space and closes after one.
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.inline.ruler.before("text", "deadline", _check_deadline)
    # Also asked at every line a paragraph, list or quote reads (their terminator checks).
    md.block.ruler.before(
        "table",
        "deadline",
        _check_deadline,
        {"alt": ["paragraph", "reference", "blockquote", "list"]},
    )
    for rule in [rule.name for rule in md.core.ruler.__rules__]:
        md.core.ruler.after(rule, f"deadline_after_{rule}", _check_deadline)
    md.core.ruler.after("block", "table_alignment", _table_alignment)
    for rule in ("math_inline", "math_inline_double", "math_block", "math_block_eqno"):
        md.add_render_rule(rule, _math)
    md.add_render_rule("image", _image)
    return md


def _warm_up() -> None:
    # Once per process: linkify compiles its patterns and Pygments finds its lexers on first use
    # (~0.3 s), which would count against the first text's budget.
    env = {"deadline": float("inf"), "images": False, "highlighted": 0}
    _ENV.set(env)
    _MD.render("www.example.org\n\n```python\nx = 1\n```", env)


_MD = _build()
_warm_up()
