"""Which base model a run may start from: the packaged one, registered models the user may read,
folders under REWARDS_ALLOWED_MODEL_ROOTS; anything else is refused with one message."""

import pytest
from django.urls import reverse

from annotate.models import Role
from annotate.services import ServiceError
from feedback_api.models import DatasetVersion
from rewards import services
from rewards.base_models import REFUSED, base_model_choices
from rewards.models import RewardModel, TrainingRun

from .factories import MembershipFactory


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.REWARDS_DIR = tmp_path / "media" / "rewards"
    settings.REWARDS_ALLOWED_MODEL_ROOTS = [tmp_path / "models"]
    return tmp_path


def model_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def done_version(project) -> DatasetVersion:
    return DatasetVersion.objects.create(
        project=project, number=1, format="pairwise", status="done", train_rows=40, test_rows=8
    )


@pytest.fixture
def alices_model(project, media) -> RewardModel:
    """Project A (alice admin) with a registered model whose folder is on disk."""
    version = done_version(project)
    run = TrainingRun.objects.create(
        project=project, dataset_version=version, objective="pairwise", status="done"
    )
    model_folder(media / "media" / "rewards" / str(project.pk) / f"run-{run.pk}" / "model")
    return RewardModel.objects.create(
        project=project,
        run=run,
        version=1,
        objective="pairwise",
        model_dir=f"rewards/{project.pk}/run-{run.pk}/model",
    )


def start(client, project, base_model: str):
    data = {
        "dataset_version": 1,
        "objective": "pairwise",
        "base_model": base_model,
        **{"epochs": 1, "learning_rate": 5e-5, "batch_size": 16, "max_length": 256, "seed": 0},
        **{"eval_split": 0.1, "precision": "auto", "checkpoint_steps": 50},
    }
    form = client.get(reverse("rewards:run-new", args=[project.slug])).context["form"]
    data = {**{k: form[k].value() for k in form.fields}, **data}
    data = {k: "" if v is None else v for k, v in data.items()}
    return client.post(reverse("rewards:run-new", args=[project.slug]), data)


def test_admin_of_another_project_cannot_train_from_its_model_folder(
    client, bob, bob_project, alices_model, media
):
    done_version(bob_project)
    client.force_login(bob)
    copied = start(client, bob_project, str(alices_model.model_path))
    missing = start(client, bob_project, str(media / "media" / "rewards" / "no" / "model"))
    assert copied.status_code == missing.status_code == 400
    errors = copied.context["form"].errors["base_model"]
    assert errors == missing.context["form"].errors["base_model"] == [REFUSED]
    # Nothing typed is lost, nothing runs, and the page does not offer alice's model.
    assert copied.context["form"]["base_model"].value() == str(alices_model.model_path)
    assert not TrainingRun.objects.filter(project=bob_project).exists()
    assert f'<option value="{alices_model.model_path}">' not in copied.content.decode()


def test_a_path_that_exists_and_one_that_does_not_get_the_same_refusal(bob, bob_project, media):
    version = done_version(bob_project)
    elsewhere = model_folder(media / "elsewhere" / "model")
    messages = []
    others = ("/etc", "org/some-hub-model", "relative/model", "/bad\0path")
    for path in (elsewhere, media / "elsewhere" / "nothing", *others):
        with pytest.raises(ServiceError) as err:
            services.training_run_create(
                dataset_version=version, user=bob, config={"base_model": str(path)}, enqueue=False
            )
        messages.append((err.value.field, str(err.value)))
    assert set(messages) == {("base_model", REFUSED)}


def test_own_and_readable_models_are_offered_and_accepted(
    client, alice, charlie, project, bob_project, alices_model
):
    MembershipFactory(project=bob_project, user=alice, role=Role.ADMIN)
    done_version(bob_project)
    client.force_login(alice)
    response = start(client, bob_project, str(alices_model.model_path))
    assert response.status_code == 302, response.context["form"].errors
    assert TrainingRun.objects.get(project=bob_project).config["base_model"] == str(
        alices_model.model_path
    )
    page = client.get(reverse("rewards:run-new", args=[bob_project.slug])).content.decode()
    assert f'<option value="{alices_model.model_path}">' in page
    # An annotator of project A may not read its registry: not offered to them.
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    assert [v for v, _ in base_model_choices(charlie, bob_project)] == [""]


def test_folders_under_an_allowed_root_are_accepted_and_cannot_escape_it(
    alice, project, alices_model, media
):
    version = alices_model.run.dataset_version
    inside = model_folder(media / "models" / "team" / "base")
    run = services.training_run_create(
        dataset_version=version, user=alice, config={"base_model": str(inside)}, enqueue=False
    )
    assert run.config["base_model"] == str(inside)
    outside = model_folder(media / "secret")
    (media / "models" / "link").symlink_to(outside)
    for path in (media / "models" / ".." / "secret", media / "models" / "link"):
        with pytest.raises(ServiceError, match="not a model folder you may train from"):
            services.training_run_create(
                dataset_version=version, user=alice, config={"base_model": str(path)}
            )


def test_an_allowed_root_does_not_open_other_projects_models(
    settings, bob, bob_project, alices_model, media
):
    settings.REWARDS_ALLOWED_MODEL_ROOTS = [media / "media"]
    with pytest.raises(ServiceError):
        services.training_run_create(
            dataset_version=done_version(bob_project),
            user=bob,
            config={"base_model": str(alices_model.model_path)},
        )
