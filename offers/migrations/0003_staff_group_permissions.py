from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    configure = ("add", "change", "view")
    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {
                "offers.offer": configure,
                "offers.offerrestriction": (*configure, "delete"),
                "offers.issuedoffer": ("view", "change"),
                "offers.offerissuejob": ("view",),
            },
            "Integration admins": {"offers.issuedoffer": ("view",)},
        },
    )


class Migration(migrations.Migration):
    dependencies = [("offers", "0002_issued_offer_locked_at"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
