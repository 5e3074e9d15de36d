"""Benchmark the annotation page in Chromium with degenerate responses: the time from asking for
/projects/<slug>/annotate/ to a form the annotator can answer (the first choice checked).

Each case of bench/render.py's pathological set is response A of one pairwise item (B: a short
answer), and "1 MB line + code" is issue 15's page: a 1 MB single-line response beside a long
code line. The text is rendered ahead (the renderer's own cost: bench/render.py), so the time is
the server's page and the browser's layout. A fresh SQLite database in a temporary directory,
Django's live-server thread, Debian's Chromium headless (PREFHUB_CHROMIUM). Each cell is the
median of --repeat loads, each by another annotator (the project's overlap), on a cold page.
Not part of CI: it prints a table and asserts nothing; the browser tests check that each of these
pages loads and can be answered.

    .venv/bin/python bench/page.py
    .venv/bin/python bench/page.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

CHROMIUM = os.getenv("PREFHUB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "bench password 1"


def cases() -> dict[str, list[str]]:
    from render import pathological

    short = "A short answer."
    out = {name: [text, short] for name, text in pathological().items()}
    out["1 MB line + code"] = ["word" * 262_144, "```\n" + "x = 1; " * 3_000 + "\n```"]
    return out


def configure(tmp: Path) -> None:
    os.environ.update(
        {
            "PREFHUB_VAR_DIR": str(tmp),
            "MEDIA_ROOT": str(tmp / "media"),
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "CELERY_BROKER_URL": f"filesystem://{tmp}/broker",
            "LOG_LEVEL": "ERROR",
            "DEBUG": "0",  # the production settings, served over plain HTTP on 127.0.0.1
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_COOKIES": "0",
            "SECRET_KEY": "bench",
            "DJANGO_ALLOW_ASYNC_UNSAFE": "true",  # Playwright's sync API runs a loop here
        }
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def setup(texts: list[str], annotators: int):
    """A pairwise project of one item, `annotators` members who log in with PASSWORD."""
    from django.contrib.auth import get_user_model

    from annotate.models import Item, Role
    from annotate.rendering import render_markdown
    from annotate.services import membership_set, project_create

    project = project_create(
        name=f"page {time.monotonic_ns()}", kind="pairwise", overlap=annotators
    )
    project.gold_rate = 0
    project.save(update_fields=["gold_rate"])
    Item.objects.create(
        project=project,
        external_id="1",
        prompt="Which answer is better?",
        responses=[{"id": f"r{i}", "text": t} for i, t in enumerate(texts, 1)],
    )
    for text in texts:
        render_markdown(text)
    users = []
    for n in range(annotators):
        user = get_user_model().objects.create_user(f"a{project.pk}-{n}", password=PASSWORD)
        membership_set(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user.username)
    return project, users


def load(browser, base_url: str, project, username: str) -> float:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    started = time.perf_counter()
    response = page.goto(f"/projects/{project.slug}/annotate/")
    assert response.status == 200, response.status
    from tests.browser.conftest import wait_for_work  # the browser tests' own "ready"

    wait_for_work(page)
    page.get_by_test_id("choice-A").check()
    seconds = time.perf_counter() - started
    context.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.epilog = "\n".join(__doc__.splitlines()[2:])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        configure(Path(tmp))
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.test.testcases import LiveServerThread
        from playwright.sync_api import sync_playwright

        server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
        server.daemon = True
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        base_url = f"http://127.0.0.1:{server.port}"
        print(f"{'case':38} {'KB':>7} {'load s':>7} {'min':>6} {'max':>6}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for name, texts in cases().items():
                project, users = setup(texts, args.repeat)
                times = [load(browser, base_url, project, u) for u in users]
                kb = sum(len(t.encode()) for t in texts) / 1000
                print(
                    f"{name:38} {kb:7.1f} {statistics.median(times):7.2f} {min(times):6.2f} "
                    f"{max(times):6.2f}"
                )
            browser.close()
        server.terminate()


if __name__ == "__main__":
    main()
