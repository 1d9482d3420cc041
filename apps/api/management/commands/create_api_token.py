from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.api import tokens


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("name", help="What the token is for")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"No user named {opts['username']!r}")
        if not user.is_active:
            raise CommandError(f"User {user.username!r} is disabled; its tokens would be refused")
        try:
            _, text = tokens.issue_token(user, opts["name"], via="cli")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(text)
