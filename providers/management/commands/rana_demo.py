"""python manage.py rana_demo [--force] [--no-user]: the offline demo, ready to click."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from providers.services.demo import demo_admin_ensure, demo_setup


class Command(BaseCommand):
    help = (
        "Create simulated providers (fast, flaky, slow, down), the default 'Demo' chain and a "
        "'Fast only' chain, load the price table and create an admin user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Reset the demo providers and chains even if they exist."
        )
        parser.add_argument("--no-user", action="store_true", help="Do not create the 'admin' user.")
        parser.add_argument("--username", default="admin", help="Name of the admin user (default: admin).")

    def handle(self, *args: Any, **options: Any) -> None:
        report = demo_setup(force=options["force"])
        if report.config is None:
            self.stdout.write("Demo chain already exists: left as it is (use --force to reset it).")
        else:
            self.stdout.write(f"Demo configuration: {report.config}.")
        self.stdout.write(f"Prices: {report.prices}.")
        if options["no_user"]:
            return
        username = options["username"]
        password = demo_admin_ensure(username=username)
        if password is None:
            self.stdout.write(f"User '{username}' already exists: its password was not changed.")
            return
        self.stdout.write(self.style.SUCCESS(f"Created superuser '{username}'."))
        self.stdout.write(f"Password (shown once, store it now): {password}")
