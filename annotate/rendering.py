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
