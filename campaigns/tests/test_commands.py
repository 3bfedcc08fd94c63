from io import StringIO

from django.core.management import call_command

from campaigns.models import Campaign


def test_demo_campaigns_are_created_once(db):
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo_campaigns", stdout=StringIO())
    output = StringIO()
    call_command("seed_demo_campaigns", stdout=output)
    assert "created now: 0" in output.getvalue()
    assert Campaign.objects.filter(livemode=False, status="active").count() == 3
