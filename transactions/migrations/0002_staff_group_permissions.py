from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {"transactions.transaction": ("view",), "transactions.return": ("view",)},
            "Integration admins": {
                "transactions.transaction": ("view", "change"),
                "transactions.return": ("view",),
                "transactions.productsync": ("view",),
            },
        },
    )


class Migration(migrations.Migration):
    dependencies = [("transactions", "0001_initial"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
