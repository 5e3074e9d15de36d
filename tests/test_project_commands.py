"""`manage.py create_project` and `add_member`."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Membership, Project, Role

from .factories import MembershipFactory


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_create_project_with_defaults(db):
    out = run("create_project", "Helpful or not", "--kind", "pairwise")
    assert out == "Created pairwise project 'Helpful or not' (slug helpful-or-not)."
    project = Project.objects.get(slug="helpful-or-not")
    assert project.config == {
        "allow_tie": True,
        "require_strength": False,
        "require_rationale": False,
    }
    assert project.overlap == 1
    assert project.guidelines == ""


def test_create_project_with_config_guidelines_and_overlap(db, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"taxonomy": ["typo", "tone"], "allow_corrections": False}))
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("# Mark every error\n", encoding="utf-8")
    run(
        "create_project",
        "Span errors",
        "--kind",
        "spans",
        "--config",
        str(config),
        "--guidelines",
        str(guidelines),
        "--overlap",
        "3",
    )
    project = Project.objects.get(name="Span errors")
    assert [t["name"] for t in project.config["taxonomy"]] == ["typo", "tone"]
    assert project.config["allow_corrections"] is False
    assert project.guidelines == "# Mark every error\n"
    assert project.overlap == 3


def test_create_project_duplicate_name(db):
    run("create_project", "Pairs", "--kind", "pairwise")
    with pytest.raises(CommandError, match="A project named 'Pairs' already exists"):
        run("create_project", "Pairs", "--kind", "listwise")
    assert Project.objects.count() == 1


def test_create_project_name_with_the_same_slug(db):
    run("create_project", "My Pairs", "--kind", "pairwise")
    with pytest.raises(CommandError, match="already exists"):
        run("create_project", "my pairs!", "--kind", "pairwise")


def test_create_project_bad_config_json(db, tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{allow_tie: true}")
    with pytest.raises(CommandError, match=r"config.json is not valid JSON"):
        run("create_project", "P", "--kind", "pairwise", "--config", str(config))
    assert not Project.objects.exists()


@pytest.mark.parametrize("content", ["[]", "null", "0", '"allow_tie"'])
def test_create_project_config_that_is_not_an_object(db, tmp_path, content):
    config = tmp_path / "config.json"
    config.write_text(content)
    with pytest.raises(CommandError, match="must hold a JSON object"):
        run("create_project", "P", "--kind", "pairwise", "--config", str(config))
    assert not Project.objects.exists()


def test_create_project_config_invalid_for_the_kind(db, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"allow_tie": "sometimes"}))
    with pytest.raises(CommandError, match="config.allow_tie: expected true or false"):
        run("create_project", "P", "--kind", "pairwise", "--config", str(config))


def test_create_project_missing_config_file(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*nope.json"):
        run("create_project", "P", "--kind", "pairwise", "--config", str(tmp_path / "nope.json"))


def test_create_project_unknown_kind(db):
    with pytest.raises(CommandError, match="invalid choice: 'likert'"):
        run("create_project", "P", "--kind", "likert")


@pytest.mark.parametrize("overlap", ["0", "101"])
def test_create_project_bad_overlap(db, overlap):
    with pytest.raises(CommandError, match="Overlap must be"):
        run("create_project", "P", "--kind", "pairwise", "--overlap", overlap)


def test_create_project_blank_name(db):
    with pytest.raises(CommandError, match="needs a name"):
        run("create_project", "  ", "--kind", "pairwise")


def test_add_member(project, bob):
    out = run("add_member", project.slug, "bob", "--role", "annotator")
    assert out == f"Added bob as annotator of {project.name}."
    assert project.role_of(bob) == Role.ANNOTATOR


def test_add_member_again_changes_the_role(project, bob):
    MembershipFactory(project=project, user=bob, role=Role.ANNOTATOR)
    out = run("add_member", project.name, "bob", "--role", "researcher")
    assert out == f"Updated bob as researcher of {project.name}."
    assert Membership.objects.get(project=project, user=bob).role == Role.RESEARCHER
    assert Membership.objects.filter(project=project, user=bob).count() == 1


def test_add_member_unknown_user(project):
    with pytest.raises(CommandError, match="No user named 'dave'"):
        run("add_member", project.slug, "dave", "--role", "annotator")


def test_add_member_unknown_role(project, bob):
    with pytest.raises(CommandError, match="invalid choice: 'owner'"):
        run("add_member", project.slug, "bob", "--role", "owner")
    assert project.role_of(bob) is None


def test_add_member_role_is_required(project, bob):
    with pytest.raises(CommandError, match="--role"):
        run("add_member", project.slug, "bob")


def test_add_member_unknown_project(bob):
    with pytest.raises(CommandError, match="No project 'nope'"):
        run("add_member", "nope", "bob", "--role", "admin")


def test_add_member_cannot_demote_the_last_admin(project, alice):
    with pytest.raises(CommandError, match="at least one admin"):
        call_command("add_member", project.slug, "alice", "--role", "annotator")
    assert project.memberships.get(user=alice).role == "admin"
