"""Demo campaigns for the demo program (test mode, SEK): run after `seed_demo`. Safe to run again."""

from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.models import Campaign
from campaigns.services.definitions import campaign_create

LIVEMODE = False
DEMO_CAMPAIGNS = [
    {
        "name": "Bakery lover: spend 200 SEK on bakery in a month",
        "description": "A goal accumulated over a calendar month; 150 bonus points when reached.",
        "trigger": "purchase",
        "currency": "SEK",
        "goal_metric": "spend",
        "goal_target": 20000,
        "goal_period": "month",
        "time_zone": "Europe/Stockholm",
        "limit_per_contact": 1,
        "limit_period": "month",
        "restrictions": [{"mode": "include", "kind": "family", "value": "bakery"}],
        "outcomes": [{"kind": "points", "points": 150}],
    },
    {
        "name": "Weekend double points",
        "description": "Purchases on Saturdays and Sundays earn their base points twice.",
        "trigger": "purchase",
        "days_of_week": [6, 7],
        "time_zone": "Europe/Stockholm",
        "outcomes": [{"kind": "points_multiplier", "multiplier": "2"}],
    },
    {
        "name": "App opened: 10 points a day",
        "description": "Listens for the app_opened event (POST /api/v1/events).",
        "trigger": "event",
        "event_type": "app_opened",
        "limit_per_contact": 1,
        "limit_period": "day",
        "time_zone": "Europe/Stockholm",
        "budget_points": 100000,
        "outcomes": [{"kind": "points", "points": 10}],
    },
]


class Command(BaseCommand):
    help = "Create the demo campaigns (test mode). Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        created = 0
        for definition in DEMO_CAMPAIGNS:
            if not Campaign.objects.filter(livemode=LIVEMODE, name=definition["name"]).exists():
                campaign_create(livemode=LIVEMODE, status="active", **definition)
                created += 1
        self.stdout.write(f"Demo campaigns ready (created now: {created}).")
