from django.db import migrations


def create_groups(apps, schema_editor):
    from core.services import STAFF_GROUPS, staff_group_permissions_grant

    group_model = apps.get_model("auth", "Group")
    for name in STAFF_GROUPS:
        group_model.objects.get_or_create(name=name)
    staff_group_permissions_grant(
        apps=apps,
        grants={
            "Integration admins": {
                "core.apikey": ("add", "change", "view"),
                "django_celery_beat.periodictask": ("view", "change"),
            },
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
