from django.db import migrations


def grant(apps, schema_editor):
    from core.services import staff_group_permissions_grant

    staff_group_permissions_grant(
        apps=apps,
        grants={
            # Marketers write the messages external systems receive; a variant still named by an
            # offer or a campaign cannot be deleted (PROTECT), so delete is safe to give.
            "Marketers": {"core.messagevariant": ("add", "change", "view", "delete")},
        },
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0006_message_variant_livemode"), ("core", "0002_staff_groups")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
