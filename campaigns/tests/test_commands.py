from django.core.management import call_command

from campaigns.models import Campaign


def test_demo_campaigns_are_created_once(db):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115 - discard output
    call_command("seed_demo_campaigns", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("seed_demo_campaigns", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Campaign.objects.filter(livemode=False, status="active").count() == 3
