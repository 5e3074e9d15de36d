from django.core.management.base import BaseCommand, CommandError

from annotate.models import Role
from annotate.services import ServiceError, membership_set, user_by_username

from ._common import project_by_ref


class Command(BaseCommand):
    help = "Add a user to a project with a role (or change their role)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="slug, name or id")
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, project, username, role, **options):
        project = project_by_ref(project)
        try:
            user = user_by_username(username)
            _, created = membership_set(project=project, user=user, role=role)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        verb = "Added" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} {username} as {role} of {project.name}."))
