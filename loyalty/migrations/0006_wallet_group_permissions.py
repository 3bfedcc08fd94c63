from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    configure = ("add", "change", "view")
    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Marketers": {
                "loyalty.program": ("change", "view"),
                "loyalty.tier": configure,
                "loyalty.earningrule": configure,
                "loyalty.earningruleexclusion": (*configure, "delete"),
                "loyalty.spendcondition": configure,
                "loyalty.spendconditionrestriction": (*configure, "delete"),
                "loyalty.account": ("view",),
                "loyalty.ledgerentry": ("view", "adjust_balance", "view_liability"),
                "loyalty.payout": ("view",),
            },
            "Integration admins": {
                "loyalty.payout": ("view", "change"),
                "loyalty.ledgerentry": ("view",),
            },
        },
    )


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0005_ledger_permissions"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
