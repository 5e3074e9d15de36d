from django.core.management.base import BaseCommand

from annotate.demo import PASSWORD, USERS, demo_seed


class Command(BaseCommand):
    help = "Create the demo users, one demo project per kind and their items (idempotent)."

    def handle(self, *args, **options):
        created = demo_seed()
        if any(created.values()):
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo: created {created['users']} users, {created['projects']} projects "
                    f"and {created['items']} items."
                )
            )
        else:
            self.stdout.write("Demo data already there: nothing to do.")
        self.stdout.write("Demo logins (username / password):")
        for user in USERS:
            role = "superuser" if user.superuser else user.role
            self.stdout.write(f"  {user.username:<12} / {PASSWORD}   ({role})")
