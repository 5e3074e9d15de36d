"""Markdown written by project staff (guidelines), rendered to HTML that is safe to show."""

from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

# nh3's default tags and attributes (ammonia's allowlist), plus no scripts, styles or handlers;
# links only to web and mail addresses, never javascript: or data:.
URL_SCHEMES = {"http", "https", "mailto"}
EXTENSIONS = ["extra", "sane_lists"]


def render_markdown(text: str) -> SafeString:
    """Markdown to sanitised HTML; raw HTML in the source is kept only where nh3 allows it."""
    html = markdown.markdown(text or "", extensions=EXTENSIONS, output_format="html")
    return mark_safe(
        nh3.clean(html, url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow")
    )


class _NoRawHTML(markdown.Extension):
    """Raw HTML in model output is shown as text, never parsed: the block and inline HTML
    processors are removed, so `<script>` ends up escaped instead of sanitised away."""

    def extendMarkdown(self, md):  # noqa: N802 (Markdown's API)
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


def render_response(text: str) -> SafeString:
    """A model's response (untrusted) as HTML: Markdown with code blocks kept, raw HTML escaped,
    and the result sanitised by nh3 (no scripts, handlers or javascript: links)."""
    html = markdown.markdown(
        text or "", extensions=[*EXTENSIONS, _NoRawHTML()], output_format="html"
    )
    return mark_safe(
        nh3.clean(html, url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow")
    )
