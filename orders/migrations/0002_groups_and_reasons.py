from django.db import migrations

REASONS = [
    ("out_of_stock", "An item is out of stock"),
    ("customer_request", "The customer asked to cancel"),
    ("store_closed", "The store is closed"),
    ("cannot_deliver", "Delivery is not possible"),
]


def forwards(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Order agents": {"orders.order": ("view", "change"), "orders.ordercancellationreason": ("view",)},
            "Integration admins": {
                "orders.order": ("view",),
                "orders.orderagent": ("add", "change", "view"),
                "orders.ordercancellationreason": ("add", "change", "view"),
            },
        },
    )
    reason = apps.get_model("orders", "OrderCancellationReason")
    for livemode in (False, True):
        for code, name in REASONS:
            reason.objects.get_or_create(livemode=livemode, code=code, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
