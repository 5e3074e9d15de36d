"""Benchmark the Markdown renderer: the one the app uses (annotate.rendering, markdown-it-py) next
to the one it replaced (Python-Markdown with `extra` and `sane_lists`, raw HTML off), same run.

    .venv/bin/python bench/render.py                  # typical set and pathological set
    .venv/bin/python bench/render.py --old-timeout 5  # give up on the old renderer sooner

Typical responses are written here (prose, lists, code, tables, and a mix of them), each cut at
1, 10 and 100 KB. The pathological set is the degenerate generations of issue 15. Each cell is
the median of --repeat renderings of uncached text (the app caches by content hash: this is the
first view's cost) in ms, and ms per KB. The old renderer runs in a child process that is killed
after --old-timeout seconds ("> N s"): some of its cases take minutes. Not part of CI: it prints
a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

PROSE = (
    "Rayleigh scattering makes the sky blue: shorter wavelengths scatter more strongly off the "
    "molecules of the air, so blue light reaches the eye from every direction. At sunset the "
    "path through the atmosphere is longer, and the blue is scattered away before it arrives, "
    "which leaves the reds and oranges. **Clouds** are white because their droplets are large "
    "enough to scatter all wavelengths about equally (*Mie scattering*), see [Wikipedia]"
    "(https://en.wikipedia.org/wiki/Rayleigh_scattering).\n\n"
)
LISTS = (
    "Here are the steps:\n1. Preheat the oven to 180 °C.\n2. Mix the flour and the sugar.\n"
    "   - sift the flour first\n   - use *caster* sugar\n3. Bake for `25` minutes.\n\n"
    "- [x] buy eggs\n- [ ] buy milk\n- ~~buy bread~~\n\n"
)
CODE = (
    "Use a dictionary:\n\n```python\ndef count_words(text: str) -> dict[str, int]:\n"
    '    """How often each word occurs."""\n    counts: dict[str, int] = {}\n'
    "    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n"
    "    return counts\n```\n\n"
)
TABLE_HEAD = "| model | params | score | notes |\n|---|--:|:-:|---|\n"
TABLE_ROW = "| llama-3-8b | 8 B | 71.2 | *instruction-tuned*, see `v2` |\n"
MIXED = PROSE + LISTS + CODE + TABLE_HEAD + TABLE_ROW * 3 + "\nThe math: \\(E = mc^2\\).\n\n"


def _cut(unit: str, size: int, head: str = "") -> str:
    text = head + unit * (size // len(unit) + 1)
    return text[:size]


def typical() -> dict[str, str]:
    cases = {}
    for kb in (1, 10, 100):
        size = kb * 1000
        cases[f"prose {kb} KB"] = _cut(PROSE, size)
        cases[f"lists {kb} KB"] = _cut(LISTS, size)
        cases[f"code {kb} KB"] = _cut(CODE, size)
        cases[f"table {kb} KB"] = _cut(TABLE_ROW, size, TABLE_HEAD)
        cases[f"mixed {kb} KB"] = _cut(MIXED, size)
    return cases


def pathological() -> dict[str, str]:
    return {
        "12 KB of [": "[" * 12_000,
        "40 KB of ![": "![" * 20_000,
        "56 KB of abbreviation definitions": "".join(f"*[A{i}]: term {i}\n" for i in range(4_000)),
        '"- " * 1000 + "x"': "- " * 1000 + "x",
        "list 250 deep": "".join("  " * i + "- x\n" for i in range(250)),
        "quote 250 deep": "".join("> " * i + "x\n" for i in range(250)),
        "1 MB single line": "word" * 262_144,
    }


def render_old(text: str) -> str:
    """What annotate/rendering.py's render_response did before markdown-it-py."""
    import markdown
    import nh3

    class NoRawHTML(markdown.Extension):
        def extendMarkdown(self, md):  # noqa: N802 (Markdown's API)
            md.preprocessors.deregister("html_block")
            md.inlinePatterns.deregister("html")

    html = markdown.markdown(
        text, extensions=["extra", "sane_lists", NoRawHTML()], output_format="html"
    )
    return nh3.clean(
        html, url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow"
    )


def render_new(text: str) -> str:
    from django.core.cache import caches

    from annotate.rendering import render_markdown

    caches["rendered"].clear()
    return str(render_markdown(text))


def _time(render, text: str, repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            out = render(text)
        except RecursionError:
            out = "RecursionError (a 500)"
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def _old_child(text: str, repeat: int, queue) -> None:
    queue.put(_time(render_old, text, repeat))


def time_old(text: str, repeat: int, timeout: float) -> tuple[float | None, str]:
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_old_child, args=(text, repeat, queue)
    )
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return None, ""
    return queue.get()


def outcome(html: str) -> str:
    if html.startswith("RecursionError"):
        return "500"
    if 'class="render-note"' in html[:200]:
        return "plain text"
    return "formatted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old-timeout", type=float, default=10.0)
    args = parser.parse_args()
    import django

    django.setup()
    render_new("warm up: ```python\nx = 1\n```")  # Pygments loads its lexers once

    print(
        f"{'case':38} {'KB':>6} {'old ms':>9} {'old ms/KB':>10} {'new ms':>8} "
        f"{'new ms/KB':>10}  new shows"
    )
    for title, cases in (("typical", typical()), ("pathological", pathological())):
        print(f"-- {title}")
        for name, text in cases.items():
            kb = len(text.encode()) / 1000
            old, old_html = time_old(text, args.repeat, args.old_timeout)
            new, html = _time(render_new, text, args.repeat)
            old_ms = f"> {args.old_timeout:.0f} s" if old is None else f"{old * 1000:.1f}"
            old_per = "" if old is None else f"{old * 1000 / kb:.2f}"
            if old_html.startswith("RecursionError"):
                old_ms, old_per = "500", "RecursionError"
            print(
                f"{name:38} {kb:6.1f} {old_ms:>9} {old_per:>10} {new * 1000:8.1f} "
                f"{new * 1000 / kb:10.2f}  {outcome(html)}"
            )


if __name__ == "__main__":
    main()
