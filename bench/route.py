"""Routing benchmark: the learned router on real preference data, and the time of a routing pass.

Part "quality": the hh-rlhf harmless-base pairs of ../shared/data/ (read by bench/realdata.py's
read_pairs; the human label is "chosen"). Split by prompt with the project's rule
(annotate.splits.in_test_splits, as realdata.py splits): --judged of the prompts are judged, up to
--rm-train of the others train the reward model. All through the app's own paths, in one project:
import with labels (annotate.services.item_import), a dataset version, a real training run
(rewards.services.training_run_execute: all-MiniLM-L6-v2, CPU), the registered model as a
reward_model judge (judges.services.judge_save) run over the judged pairs through the real judge
run path (judges.services.run_start, Celery eager: the runner, verdicts, judgments with the
scores), the MiniLM similarity of the responses (routing.services.response_similarity_compute with
rewards.embeddings.similarity, as the routing.train_router task does), then
routing.services.router_train with --test-share of the judged pairs held out (by hash of the
item): its model choice, cross-validated and held-out AUC are printed. The comparison then runs on
every judged pair with cross-fitted risks (routing.learning.cross_fitted: each pair scored by a
router trained on the other fold): agreement of the final labels with the people's at each share
sent to people, for random (its expectation), confidence, learned and the oracle
(routing.report), paired bootstrap 95% intervals of learned - random and learned - confidence at
25% and 50% (routing.report.bootstrap_difference), and the learning curve: held-out AUC and
agreement at 25% against the number of training pairs (routing.learning.fit on subsamples of the
router's training side, the same held-out side).

Part "speed": --items synthetic pending items, each with a reward-model verdict and its scores,
routed by one routing.services.route_items pass under the confidence policy and under the
learned policy (the quality part's router when it ran, else one trained on 400 of the items
given a synthetic person's label), budget 25%, audit 10%.

    .venv/bin/python bench/route.py                                  # both parts, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/route.py --part speed

SQLite: a fresh database in a temporary PREFHUB_VAR_DIR. PostgreSQL: a fresh database
bench_route_<pid> next to DATABASE_URL's, dropped afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.epilog = "\n".join(__doc__.splitlines()[2:])
    parser.add_argument("--part", default="quality,speed", help="quality, speed or both")
    parser.add_argument("--judged", type=float, default=0.5, help="Share of prompts judged.")
    parser.add_argument("--rm-train", type=int, default=2000, help="Reward-model training pairs.")
    parser.add_argument("--test-share", type=float, default=0.5, help="Judged pairs held out.")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--items", type=int, default=100_000, help="Items routed in one pass.")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-route-") as tmp:
        drop = configure(Path(tmp))
        try:
            run(args)
        finally:
            drop()


def configure(tmp: Path):
    """A fresh database (SQLite in tmp, or a new PostgreSQL database), eager Celery, tmp media."""
    os.environ.update(
        {
            "MEDIA_ROOT": str(tmp / "media"),
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "CELERY_BROKER_URL": f"filesystem://{tmp}/broker",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
            "SECRET_KEY": "bench",
        }
    )
    base = os.getenv("DATABASE_URL", "")
    drop = lambda: None  # noqa: E731
    if base.startswith("postgres"):
        from judge import pg_admin  # bench/judge.py's helper

        name = f"bench_route_{os.getpid()}"
        pg_admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        drop = lambda: pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # noqa: E731
    else:
        os.environ["PREFHUB_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return drop


def run(args) -> None:
    from django.db import connection

    print(f"database: {connection.vendor}")
    router = None
    if "quality" in args.part:
        router = quality(args)
    if "speed" in args.part:
        speed(args, router)


# Quality ----------------------------------------------------------------------------------------


def quality(args):
    from realdata import read_pairs

    from annotate import splits
    from annotate.services import project_create

    rows = read_pairs()
    keys = [splits.prompt_key(r["prompt"]) for r in rows]
    judged_side = splits.in_test_splits(keys, seed=args.seed, fraction=args.judged, both_sides=True)
    judged = [r for r, j in zip(rows, judged_side, strict=True) if j]
    others = [r for r, j in zip(rows, judged_side, strict=True) if not j]
    assert not {r["prompt"] for r in judged} & {r["prompt"] for r in others}
    rm_rows = random.Random(args.seed).sample(others, min(args.rm_train, len(others)))
    print(
        f"{len(rows)} hh-rlhf pairs: {len(judged)} judged, {len(rm_rows)} of the other "
        f"{len(others)} train the reward model (split by prompt)"
    )
    project = project_create(name="hh-rlhf routing", kind="pairwise")
    reward_model = train_reward_model(project, rm_rows, args)
    judge = judge_pairs(project, reward_model, judged)
    return learn(project, judge, args)


def import_pairs(project, rows: list[dict], prefix: str) -> None:
    from annotate.services import item_import

    lines = [
        json.dumps({"id": f"{prefix}{n}", **r}) for n, r in enumerate(rows)
    ]  # chosen = the people's label
    stream = io.BytesIO("\n".join(lines).encode())
    report = item_import(project=project, stream=stream, fmt="jsonl", keep_labels=True)
    assert report.created == len(rows), report.summary()


def train_reward_model(project, rows: list[dict], args):
    from feedback_api.datasets import dataset_version_build, dataset_version_create
    from rewards import services as rewards

    started = time.perf_counter()
    import_pairs(project, rows, "rm-")
    version = dataset_version_create(project=project, user=None, format="pairwise", enqueue=False)
    version = dataset_version_build(version_id=version.pk)
    assert version.status == version.Status.DONE, version.error
    config = {"max_length": args.max_length, "batch_size": 16, "epochs": 1.0, "eval_split": 0.0}
    run = rewards.training_run_create(
        dataset_version=version, user=None, config=config, enqueue=False
    )
    run = rewards.training_run_execute(run_id=run.pk)
    assert run.status == run.Status.DONE, run.logs[-2000:]
    model = run.reward_model
    print(
        f"reward model v{model.version}: {version.train_rows} train / {version.test_rows} "
        f"held-out pairs, metrics {json.dumps(model.metrics)[:200]}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    return model


def judge_pairs(project, reward_model, rows: list[dict]):
    from judges import services as judges
    from judges.models import JudgeRun

    started = time.perf_counter()
    import_pairs(project, rows, "judged-")
    judge = judges.judge_save(
        project=project,
        data={"name": "rm", "backend": "reward_model", "reward_model_id": reward_model.pk},
    )
    ids = [f"judged-{n}" for n in range(len(rows))]
    run = judges.run_start(project=project, judges=[judge], selection="ids", external_ids=ids)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE, run.error
    print(f"judge run {run.pk}: {run.items} pairs, {time.perf_counter() - started:.0f} s")
    return judge


def learn(project, judge, args):
    from sklearn.metrics import roc_auc_score

    from annotate.models import Annotation
    from rewards.embeddings import similarity
    from routing import features, learning, report, services

    services.policy_save(
        project=project, data={"policy": "learned", "judge": judge, "audit_share": 0.0}
    )
    started = time.perf_counter()
    n = services.response_similarity_compute(project=project, similarity=similarity)
    print(f"MiniLM similarity of {n} items' responses: {time.perf_counter() - started:.0f} s")
    seed = args.seed
    # hh-rlhf's labels are people's, imported with the pairs.
    sources = (Annotation.Source.HUMAN, Annotation.Source.IMPORTED)
    router = services.router_train(
        project=project, embeddings=True, seed=seed, test_share=args.test_share, sources=sources
    )
    labelled = report.double_labelled(judge, sources)
    judged = [d for d in labelled if d.item.external_id.startswith("judged-")]
    candidates = learning.with_cached_similarity(
        features.candidates([d.item for d in judged], judge)
    )
    test = learning.held_out(candidates, seed=seed, test_share=args.test_share)
    disagrees = [not d.agrees for d in judged]
    agrees = [d.agrees for d in judged]
    # Every judged pair gets a risk from a router that did not learn from it (2 folds, the model
    # chosen as the app chooses it): the comparison runs on all of them, not on half.
    learned = learning.cross_fitted(candidates, disagrees, folds=2, seed=seed)
    risks = {
        "confidence": learning.confidence_risks(candidates),
        "learned": learned,
        "oracle": report.oracle_risks(agrees),
    }
    print(
        f"\nrouter {router.pk} ({router.params.get('model')}; cross-validated AUC "
        f"{router.params.get('cv_auc')}): {router.n_train} train / {router.n_test} held-out "
        f"pairs, held-out AUC {router.auc:.3f}; {len(router.feature_names)} features: "
        f"{', '.join(router.feature_names)}"
    )
    print(
        f"\nall {len(judged)} judged pairs, cross-fitted (the judge disagrees with people on "
        f"{disagrees.count(True)}): AUC learned {roc_auc_score(disagrees, learned):.3f}, "
        f"confidence {roc_auc_score(disagrees, risks['confidence']):.3f}"
    )
    names = ["random", *risks]
    curves = {"random": report.random_curve(agrees, SHARES)}
    curves.update({name: report.agreement_curve(r, agrees, SHARES) for name, r in risks.items()})
    print("\n| share to people | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for k, share in enumerate(SHARES):
        print(f"| {share:.0%} | " + " | ".join(f"{curves[n][k]:.3f}" for n in names) + " |")
    print("\n| share | learned - random [95% CI] | learned - confidence [95% CI] |")
    print("|---:|---|---|")
    for share in (0.25, 0.5):
        cells = []
        for other in (None, risks["confidence"]):
            d, low, high = report.bootstrap_difference(
                learned, other, agrees, share, samples=1000, seed=seed
            )
            cells.append(f"{d:+.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"| {share:.0%} | {cells[0]} | {cells[1]} |")
    learning_curve(candidates, disagrees, test, seed, args.test_share)
    return router


def learning_curve(candidates, disagrees, test, seed: int, share: float) -> None:
    """Held-out AUC and agreement at 25% with n training pairs (3 draws each), same held-out."""
    from routing import learning

    train_rows = [i for i, t in enumerate(test) if not t]
    test_rows = [i for i, t in enumerate(test) if t]
    print("\n| training pairs | held-out AUC (3 draws) | agreement at 25% (3 draws) |")
    print("|---:|---|---|")
    for n in (50, 100, 200, 400, len(train_rows)):
        if n > len(train_rows):
            continue
        aucs, at_25 = [], []
        for draw in range(3 if n < len(train_rows) else 1):
            chosen = random.Random(seed + draw).sample(train_rows, n) + test_rows
            fitted = learning.fit(
                [candidates[i] for i in chosen],
                [disagrees[i] for i in chosen],
                seed=seed,
                test_share=share,
                minimum=0,
            )
            aucs.append(fitted.auc)
            at_25.append(fitted.curve["learned"][fitted.curve["shares"].index(0.25)])
        aucs_text, at_25_text = (" ".join(f"{a:.3f}" for a in v) for v in (aucs, at_25))
        print(f"| {n} | {aucs_text} | {at_25_text} |")


# Speed ------------------------------------------------------------------------------------------


def speed(args, router) -> None:
    from annotate.models import Item
    from annotate.services import project_create
    from judges.models import Judge, JudgeRun, Judgment, Verdict
    from routing import services
    from routing.models import RouteDecision, RouterModel

    project = project_create(name="routing speed", kind="pairwise")
    judge = Judge.objects.create(project=project, name="rm", backend="reward_model")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    items = Item.objects.bulk_create(
        [
            Item(
                project=project,
                external_id=f"s{n}",
                prompt=f"Human: question {n} about topic {n % 97}?",
                responses=[
                    {"id": "1", "text": "an answer " * rng.randint(1, 40), "model": "m"},
                    {"id": "2", "text": "another reply " * rng.randint(1, 40), "model": "m"},
                ],
                metadata={"source": rng.choice(["a", "b", "c"])},
                route=Item.Route.PENDING,
            )
            for n in range(args.items)
        ],
        batch_size=5000,
    )
    run = JudgeRun.objects.create(project=project, selection="all")
    label = {"choice": "A", "strength": 2, "rationale": ""}
    for cls, make in (
        (
            Judgment,
            lambda i: Judgment(
                run=run,
                item=i,
                judge=judge,
                prompt_version="v1",
                status="done",
                extra={"scores": {"1": rng.gauss(0, 1), "2": rng.gauss(0, 1)}},
            ),  # fmt: skip
        ),
        (
            Verdict,
            lambda i: Verdict(
                run=run, item=i, judge=judge, prompt_version="v1", status="agreed", label=label
            ),
        ),
    ):
        cls.objects.bulk_create([make(i) for i in items], batch_size=5000)
    print(f"\n{args.items} synthetic judged items written in {time.perf_counter() - started:.0f} s")
    # What the judge's worker does as it writes verdicts (routing.signals): not in the pass.
    started = time.perf_counter()
    stored = services.text_features_store(Item.objects.filter(project=project))
    print(f"text features of {stored} items stored in {time.perf_counter() - started:.1f} s")
    if router is not None:
        # The hh-rlhf router, registered for this judge: the same file, the same features.
        RouterModel.objects.create(
            project=project,
            judge=judge,
            status=RouterModel.Status.DONE,
            n_train=router.n_train,
            n_test=router.n_test,
            auc=router.auc,
            feature_names=router.feature_names,
            model_path=router.model_path,
        )
    else:
        synthetic_router(project, judge, items[:400], rng)
    row = services.policy_for(project)
    row.judge, row.budget_share, row.audit_share = judge, 0.25, 0.1
    print("\n| policy | items routed | to people | to judges | both (audit) | route_items s |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in ("confidence", "learned"):
        Item.objects.filter(project=project, human_label_count=0).update(route=Item.Route.PENDING)
        RouteDecision.objects.filter(item__project=project).delete()
        row.policy = policy
        row.save()
        started = time.perf_counter()
        result = services.route_items(project=project, trigger="bench")
        seconds = time.perf_counter() - started
        r = result.routed
        print(
            f"| {policy} | {sum(r.values())} | {r.get('human', 0)} | {r.get('judge', 0)} "
            f"| {r.get('both', 0)} | {seconds:.1f} |"
        )


def synthetic_router(project, judge, items, rng) -> None:
    """Without the quality part: a router trained on 400 of the items given a person's label
    (who disagrees with the judge mostly on source "c"); those items are then started."""
    from django.contrib.auth import get_user_model

    from annotate.models import Annotation, Item
    from routing import services

    person = get_user_model().objects.create(username="bench-person")
    Annotation.objects.bulk_create(
        [
            Annotation(
                item=i,
                source="human",
                annotator=person,
                kind="pairwise",
                label={
                    "choice": "B"
                    if rng.random() < (0.8 if i.metadata["source"] == "c" else 0.1)
                    else "A",
                    "strength": 2,
                    "rationale": "",
                },
            )
            for i in items
        ]
    )
    Item.objects.filter(pk__in=[i.pk for i in items]).update(human_label_count=1, route="human")
    services.policy_save(project=project, data={"policy": "learned", "judge": judge})
    router = services.router_train(project=project)
    print(f"synthetic router {router.pk}: held-out AUC {router.auc:.3f} on 400 items")


if __name__ == "__main__":
    main()
