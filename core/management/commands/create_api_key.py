from django.core.management.base import BaseCommand, CommandError

from core import services
from core.exceptions import ValidationError


class Command(BaseCommand):
    help = "Create an API key and print it on stdout (alone on its line). It is shown only this once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--mode", required=True, choices=["live", "test"])
        parser.add_argument(
            "--scopes", default="integration", help="Comma-separated: integration, management (default: integration)"
        )

    def handle(self, *args, name, mode, scopes, **options):
        scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            api_key, key = services.api_key_create(name=name, livemode=mode == "live", scopes=scope_list)
        except ValidationError as error:
            raise CommandError(error.message) from None
        self.stderr.write(f"Created {mode} key '{api_key.name}' with scopes {', '.join(api_key.scopes)}.")
        self.stdout.write(key)
