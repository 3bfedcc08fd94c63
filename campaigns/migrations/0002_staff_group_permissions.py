from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    configure = ("add", "change", "view")
    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {
                "campaigns.campaign": configure,
                "campaigns.campaignrestriction": (*configure, "delete"),
                "campaigns.campaignoutcome": (*configure, "delete"),
                "campaigns.campaignaudiencemember": ("view", "add", "delete"),
                "campaigns.campaignaward": ("view",),
                "campaigns.campaignparticipation": ("view",),
                "campaigns.goalcontribution": ("view",),
                "campaigns.event": ("view",),
            },
            "Integration admins": {"campaigns.event": ("view", "change"), "campaigns.campaignaward": ("view",)},
        },
    )


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
