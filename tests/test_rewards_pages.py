"""The training pages: start a run from a dataset version, watch it (htmx polling), cancel it,
list runs, compare reward models and download one. No training here: runs and models are rows."""

import io
import json
import re
import zipfile

import pytest
from django.urls import reverse

from annotate.models import Role
from feedback_api.models import DatasetVersion
from rewards.models import RewardModel, TrainingRun

from .factories import MembershipFactory

HISTORY = [
    {"step": 5, "epoch": 0.1, "loss": 0.69, "learning_rate": 5e-5},
    {"step": 10, "epoch": 0.2, "loss": 0.61, "learning_rate": 4e-5},
    {"step": 20, "epoch": 0.4, "loss": 0.52, "eval": {"loss": 0.55, "accuracy": 0.64}},
]


def url(name: str, project, *args) -> str:
    return reverse(f"rewards:{name}", args=[project.slug, *args])


@pytest.fixture
def version(project):
    return DatasetVersion.objects.create(
        project=project, number=1, format="pairwise", status="done", train_rows=40, test_rows=8
    )


def make_run(version, **fields) -> TrainingRun:
    values = {
        "project": version.project,
        "dataset_version": version,
        "objective": "pairwise",
        "config": {"objective": "pairwise", "epochs": 1.0, "base_model": ""},
        "base_model": "all-MiniLM-L6-v2",
        **fields,
    }
    return TrainingRun.objects.create(**values)


def make_model(run, version: int, metrics: dict, **fields) -> RewardModel:
    return RewardModel.objects.create(
        project=run.project,
        run=run,
        version=version,
        objective=run.objective,
        base_model=run.base_model,
        metrics=metrics,
        model_dir=f"rewards/model-{version}",
        **fields,
    )


def form_defaults(client, project, version) -> dict:
    """The start form as the browser would post it, untouched."""
    form = client.get(url("run-new", project) + f"?version={version.number}").context["form"]
    values = {name: form[name].value() for name in form.fields}
    return {name: "" if value is None else value for name, value in values.items()}


def all_pages(project, run, model_version: int = 1) -> list[tuple[str, str]]:
    return [
        ("get", url("runs", project)),
        ("get", url("run-new", project)),
        ("post", url("run-new", project)),
        ("get", url("run-detail", project, run.pk)),
        ("post", url("run-cancel", project, run.pk)),
        ("get", url("models", project)),
        ("get", url("model-download", project, model_version)),
    ]


# Starting a run -------------------------------------------------------------------------------


def test_start_form_is_prefilled_with_the_defaults_and_help(client, alice, project, version):
    client.force_login(alice)
    response = client.get(url("run-new", project) + "?version=1")
    assert response.status_code == 200
    form = response.context["form"]
    assert form["dataset_version"].value() == 1
    assert form["objective"].value() == "pairwise"
    assert form["epochs"].value() == 1.0
    assert form["learning_rate"].value() == 1e-4
    assert (form["batch_size"].value(), form["max_length"].value()) == (16, 256)
    assert (form["precision"].value(), form["checkpoint_steps"].value()) == ("auto", 50)
    assert form["base_model"].value() == ""
    html = response.content.decode()
    assert "Passes over the training rows." in html
    assert "all-MiniLM-L6-v2 (packaged, offline)" in html
    assert 'step="any"' in html


def test_start_form_derives_the_objective_from_the_version_format(client, alice, project, version):
    DatasetVersion.objects.create(
        project=project, number=2, format="ratings", status="done", train_rows=5
    )
    client.force_login(alice)
    form = client.get(url("run-new", project) + "?version=2").context["form"]
    assert (form["dataset_version"].value(), form["objective"].value()) == (2, "ratings")


def test_start_form_offers_only_finished_versions(client, alice, project, version):
    DatasetVersion.objects.create(project=project, number=2, format="pairwise", status="running")
    client.force_login(alice)
    form = client.get(url("run-new", project) + "?version=2").context["form"]
    assert [n for n, _ in form.fields["dataset_version"].choices] == [1]
    assert form["dataset_version"].value() == 1


def test_posting_the_defaults_creates_a_run_and_opens_its_page(
    client, alice, project, version, media, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    data = form_defaults(client, project, version)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url("run-new", project) + "?version=1", data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response.url == url("run-detail", project, run.pk)
    assert (run.dataset_version, run.created_by, run.status) == (version, alice, "pending")
    assert run.objective == "pairwise"
    assert run.config["epochs"] == 1.0 and run.config["batch_size"] == 16
    assert len(callbacks) == 1  # the enqueue, on commit


def test_posted_values_reach_the_run_config(
    client, alice, project, version, media, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    data = form_defaults(client, project, version)
    data.update(epochs="3", learning_rate="2e-5", batch_size="4", seed="7", precision="fp32")
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url("run-new", project), data)
    config = TrainingRun.objects.get().config
    assert (config["epochs"], config["learning_rate"], config["batch_size"]) == (3.0, 2e-5, 4)
    assert (config["seed"], config["precision"]) == (7, "fp32")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", "0", "must be positive"),
        ("learning_rate", "fast", "Enter a number."),
        ("base_model", "/no/such/model", "is not a model folder"),
        ("eval_split", "1.5", "must be in [0, 1)"),
        ("objective", "listwise", "trains the pairwise objective"),
    ],
)
def test_bad_input_shows_the_error_on_its_field_and_creates_nothing(
    client, alice, project, version, media, field, value, message
):
    client.force_login(alice)
    data = form_defaults(client, project, version)
    data.update({field: value, "seed": "1234"})
    response = client.post(url("run-new", project), data)
    assert response.status_code == 400
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert not TrainingRun.objects.exists()
    # Nothing typed is lost.
    assert form[field].value() == value and form["seed"].value() == "1234"


def test_the_start_page_without_a_finished_version_points_to_the_datasets(client, alice, project):
    client.force_login(alice)
    response = client.get(url("run-new", project))
    assert response.status_code == 200
    assert reverse("dataset-pages:datasets", args=[project.slug]).encode() in response.content
    assert b'id="run-form"' not in response.content


def test_datasets_page_has_a_train_button_per_finished_version_for_admins(
    client, alice, charlie, project, version
):
    DatasetVersion.objects.create(project=project, number=2, format="pairwise", status="failed")
    datasets = reverse("dataset-pages:datasets", args=[project.slug])
    client.force_login(alice)
    html = client.get(datasets).content.decode()
    assert f'href="{url("run-new", project)}?version=1"' in html
    assert "?version=2" not in html
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    client.force_login(charlie)
    assert "Train a reward model" not in client.get(datasets).content.decode()


def test_project_page_links_researchers_to_the_reward_models(client, charlie, project):
    membership = MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    client.force_login(charlie)
    link = url("models", project).encode()
    assert link in client.get(project.get_absolute_url()).content
    membership.role = Role.ANNOTATOR
    membership.save()
    assert link not in client.get(project.get_absolute_url()).content


# Who sees what --------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_from_every_training_page(client, project, version):
    run = make_run(version)
    for method, page in all_pages(project, run):
        response = getattr(client, method)(page)
        assert response.status_code == 302, page
        assert response.url.startswith(reverse("login")), page


def test_non_member_gets_404_on_every_training_page(client, bob, bob_project, project, version):
    run = make_run(version)
    make_model(run, 1, {"accuracy": 0.7})
    client.force_login(bob)
    for method, page in all_pages(project, run):
        assert getattr(client, method)(page).status_code == 404, page
    # Nor does bob reach alice's run through his own project.
    assert client.get(url("run-detail", bob_project, run.pk)).status_code == 404
    assert client.get(url("model-download", bob_project, 1)).status_code == 404
    assert TrainingRun.objects.get().cancel_requested is False


def test_annotator_gets_403_on_every_training_page(client, charlie, project, version):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    run = make_run(version)
    client.force_login(charlie)
    for method, page in all_pages(project, run):
        assert getattr(client, method)(page).status_code == 403, page


def test_researcher_watches_runs_but_cannot_start_or_cancel(client, charlie, project, version):
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    run = make_run(version, status="running")
    client.force_login(charlie)
    assert client.get(url("runs", project)).status_code == 200
    response = client.get(url("run-detail", project, run.pk))
    assert response.status_code == 200
    assert url("run-cancel", project, run.pk).encode() not in response.content
    assert url("run-new", project).encode() not in client.get(url("runs", project)).content
    assert client.get(url("run-new", project)).status_code == 403
    assert client.post(url("run-new", project), {"dataset_version": 1}).status_code == 403
    assert client.post(url("run-cancel", project, run.pk)).status_code == 403
    run.refresh_from_db()
    assert (run.cancel_requested, TrainingRun.objects.count()) == (False, 1)


def test_ids_too_big_for_the_database_are_404(client, alice, project):
    client.force_login(alice)
    assert client.get(url("runs", project) + f"{2**70}/").status_code == 404


# The run page ---------------------------------------------------------------------------------


def test_run_page_shows_progress_eta_throughput_chart_data_config_and_logs(
    client, alice, project, version
):
    run = make_run(
        version,
        status="running",
        step=30,
        total_steps=120,
        eta_s=95,
        throughput=12.5,
        throughput_unit="pairs/s",
        loss=0.52,
        history=HISTORY,
        eval_metrics={"loss": 0.55, "accuracy": 0.64},
        logs="".join(f"step {i} loss 0.5\n" for i in range(1, 301)),
    )
    client.force_login(alice)
    response = client.get(url("run-detail", project, run.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'max="100" value="25"' in html
    assert "step 30 of 120" in html
    assert "ETA 95 s (about 2 min)" in html
    assert "12.5 pairs/s" in html
    chart = re.search(r'<script id="run-history" type="application/json">(.*?)</script>', html)
    assert json.loads(chart[1]) == HISTORY
    assert 'data-chart="run-history" data-series="loss,eval_loss"' in html
    assert 'data-series="eval_*"' in html
    assert "js/chart.js" in html
    assert '<th scope="row"><code>epochs</code></th>' in html
    # The log's tail: the last 200 lines.
    logs = re.search(r'<pre class="logs" id="run-logs">(.*?)</pre>', html, re.S)[1]
    assert logs.splitlines()[0] == "step 101 loss 0.5" and logs.endswith("step 300 loss 0.5")
    assert url("run-cancel", project, run.pk) in html


def test_htmx_partial_polls_every_2_seconds_while_running(client, alice, project, version):
    run = make_run(version, status="running", step=3, total_steps=10, history=HISTORY)
    client.force_login(alice)
    response = client.get(url("run-detail", project, run.pk), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="run-status"')
    assert "<html" not in html and 'id="run-config"' not in html
    assert 'hx-trigger="every 2s"' in html and 'hx-swap="outerHTML"' in html
    assert 'id="run-history"' in html and "step 3 of 10" in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_htmx_partial_stops_polling_when_done_and_links_the_model(client, alice, project, version):
    run = make_run(version, status="done", step=10, total_steps=10, history=HISTORY)
    make_model(run, 1, {"accuracy": 0.8})
    client.force_login(alice)
    response = client.get(url("run-detail", project, run.pk), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "hx-trigger" not in html and "hx-get" not in html
    assert "reward model v1" in html
    assert url("model-download", project, 1) in html
    assert url("run-cancel", project, run.pk) not in html


def test_span_run_page_shows_the_class_prior_baseline_beside_the_f1(
    client, alice, project, version
):
    metrics = {
        "f1": {"non-factual": 0.61, "factual": 0.2, "macro": 0.405},
        "prior_f1": {"non-factual": 0.599, "factual": 0.05, "macro": 0.3245},
        "tokens": 900,
    }
    run = make_run(version, status="done", objective="spans", eval_metrics=metrics)
    client.force_login(alice)
    html = client.get(url("run-detail", project, run.pk)).content.decode()
    # Sorted by name: PostgreSQL's jsonb does not keep a dict's order.
    f1 = html.index("<dt>f1</dt><dd>factual 0.200, macro 0.405, non-factual 0.610</dd>")
    prior = html.index("factual 0.050, macro 0.325, non-factual 0.599</dd>")
    assert f1 < prior and "class-prior baseline" in html


def test_failed_run_shows_its_error_and_no_cancel(client, alice, project, version):
    run = make_run(version, status="failed", error="DataError: no training rows")
    client.force_login(alice)
    html = client.get(url("run-detail", project, run.pk)).content.decode()
    assert '<pre class="error" id="run-error">DataError: no training rows</pre>' in html
    assert "hx-trigger" not in html and url("run-cancel", project, run.pk) not in html


def test_runs_list_shows_status_and_the_registered_model(client, alice, project, version):
    done = make_run(version, status="done", loss=0.3)
    make_model(done, 1, {})
    running = make_run(version, status="running", step=5, total_steps=10)
    client.force_login(alice)
    html = client.get(url("runs", project)).content.decode()
    assert f'id="run-{done.pk}"' in html and f'id="run-{running.pk}"' in html
    assert "0.3000" in html and 'value="50"' in html
    assert f"{url('models', project)}#model-1" in html


# Cancel ---------------------------------------------------------------------------------------


def test_cancel_asks_a_running_run_to_stop(client, alice, project, version):
    run = make_run(version, status="running")
    client.force_login(alice)
    response = client.post(url("run-cancel", project, run.pk))
    assert response.status_code == 302 and response.url == url("run-detail", project, run.pk)
    run.refresh_from_db()
    assert (run.cancel_requested, run.status) == (True, "running")
    html = client.get(response.url).content.decode()
    assert "cancelling at the next step" in html


def test_cancel_of_a_pending_run_cancels_it_at_once(client, alice, project, version):
    run = make_run(version)
    client.force_login(alice)
    client.post(url("run-cancel", project, run.pk))
    run.refresh_from_db()
    assert (run.cancel_requested, run.status) == (True, "cancelled")


def test_cancel_of_a_finished_run_says_so(client, alice, project, version):
    run = make_run(version, status="done")
    client.force_login(alice)
    response = client.post(url("run-cancel", project, run.pk), follow=True)
    assert "already done" in [str(m) for m in response.context["messages"]][0]
    run.refresh_from_db()
    assert run.cancel_requested is False


def test_cancel_is_post_only(client, alice, project, version):
    run = make_run(version, status="running")
    client.force_login(alice)
    assert client.get(url("run-cancel", project, run.pk)).status_code == 405


# Registry -------------------------------------------------------------------------------------


def test_registry_compares_versions_with_their_key_metrics(client, charlie, project, version):
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    # The shapes rewards.train.evaluate_examples writes, per objective.
    make_model(make_run(version, status="done"), 1, {"accuracy": 0.7123, "pairs": 8})
    listwise = make_run(version, status="done", objective="listwise")
    make_model(listwise, 2, {"kendall_tau": 0.41, "lists": 5})
    spans = {
        "f1": {"irrelevant": 0.26, "unverifiable": 0.4, "macro": 0.33},
        "prior_f1": {"irrelevant": 0.6, "unverifiable": 0.1, "macro": 0.35},
        "tokens": 90,
    }
    make_model(make_run(version, status="done", objective="spans"), 3, spans)
    ratings = {"mae": [0.8, 1.0], "spearman": [0.2, 0.1]}
    make_model(make_run(version, status="done", objective="ratings"), 4, ratings)
    client.force_login(charlie)
    response = client.get(url("models", project))
    assert response.status_code == 200
    rows = {row["model"].version: row["metrics"] for row in response.context["rows"]}
    assert rows == {
        1: [0.7123, None, None, None],
        2: [None, 0.41, None, None],
        3: [None, None, 0.33, None],
        4: [None, None, None, 0.9],
    }
    html = response.content.decode()
    for n in range(1, 5):
        assert f'id="model-{n}"' in html
    assert "0.712" in html and "Kendall τ" in html and "v1 <small" in html
    # A spans model's macro F1 has its class-prior baseline beside it (here above it).
    assert '0.330 <small class="muted baseline">(class prior 0.350)</small>' in html
    assert html.count('class="muted baseline"') == 1


def test_registry_lists_in_a_fixed_number_of_queries(
    client, alice, project, version, django_assert_max_num_queries
):
    client.force_login(alice)
    for n in range(1, 6):
        make_model(make_run(version, status="done"), n, {"accuracy": 0.5})
    with django_assert_max_num_queries(6):
        assert client.get(url("models", project)).status_code == 200


def test_download_zips_the_model_folder(client, alice, project, version, media):
    run = make_run(version, status="done")
    model = make_model(run, 1, {})
    folder = media / model.model_dir
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    client.force_login(alice)
    response = client.get(url("model-download", project, 1))
    assert response.status_code == 200
    assert model.artifact_name in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    assert any(n.endswith("config.json") for n in names)
    assert any(n.endswith("model.safetensors") for n in names)


def test_download_of_a_model_whose_files_are_gone_is_404(client, alice, project, version, media):
    make_model(make_run(version, status="done"), 1, {})
    client.force_login(alice)
    assert client.get(url("model-download", project, 1)).status_code == 404
    assert client.get(url("model-download", project, 2)).status_code == 404


def test_runs_list_queries_do_not_grow_with_runs(
    client, alice, project, version, django_assert_max_num_queries
):
    client.force_login(alice)
    make_model(make_run(version, status="done"), 1, {})
    with django_assert_max_num_queries(10) as few:
        client.get(url("runs", project))
    for n in range(2, 8):
        make_model(make_run(version, status="done"), n, {})
    with django_assert_max_num_queries(len(few)):
        assert client.get(url("runs", project)).status_code == 200
