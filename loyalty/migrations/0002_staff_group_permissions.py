from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {"loyalty.contact": ("view", "change"), "loyalty.contactexternalid": ("view",)},
            "Order agents": {"loyalty.contact": ("view",)},
            "Integration admins": {
                "loyalty.contact": ("view",),
                "loyalty.contactexternalid": ("view", "add"),
            },
        },
    )


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0001_initial"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
