from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {"transactions.claim": ("view",)},
            "Integration admins": {"transactions.claim": ("view",)},
        },
    )


class Migration(migrations.Migration):
    dependencies = [("transactions", "0003_claim"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
