from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    everything = ("add", "change", "view")
    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {
                "catalogue.merchant": ("view",),
                "catalogue.venue": ("view",),
                "catalogue.product": ("view", "change"),
                "catalogue.productfamily": everything,
                "catalogue.brand": everything,
            },
            "Order agents": {"catalogue.venue": ("view",), "catalogue.product": ("view",)},
            "Integration admins": {
                "catalogue.merchant": everything,
                "catalogue.venue": everything,
                "catalogue.product": everything,
                "catalogue.productfamily": everything,
                "catalogue.brand": everything,
            },
        },
    )


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0001_initial"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
