"""Staff groups come from data migrations with the permissions each role needs, and no more."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from core.services import STAFF_GROUPS, staff_group_permissions_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_of(django_user_model):
    def make(group_name):
        user = django_user_model.objects.create_user(username=group_name.lower().replace(" ", "-"), is_staff=True)
        user.groups.add(Group.objects.get(name=group_name))
        return django_user_model.objects.get(pk=user.pk)  # fresh: permission caches are per instance

    return make


def migration_state_apps():
    """The historical app registry a data migration receives (the helper mutates app configs, so
    it must never be handed the global registry)."""
    return MigrationLoader(connection).project_state().apps


def group_permissions(name):
    return {
        f"{app_label}.{codename}"
        for app_label, codename in Group.objects.get(name=name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_the_three_staff_groups_exist():
    assert set(STAFF_GROUPS) == {"Marketers", "Order agents", "Integration admins"}
    assert set(Group.objects.filter(name__in=STAFF_GROUPS).values_list("name", flat=True)) == set(STAFF_GROUPS)


def test_order_agents_can_view_contacts_but_not_change_them(member_of):
    order_agent = member_of("Order agents")

    assert order_agent.has_perm("loyalty.view_contact")
    assert not order_agent.has_perm("loyalty.change_contact")
    assert not order_agent.has_perm("loyalty.add_contact")
    assert not order_agent.has_perm("loyalty.delete_contact")
    assert order_agent.has_perm("catalogue.view_venue")
    assert order_agent.has_perm("catalogue.view_product")
    assert not order_agent.has_perm("catalogue.change_product")


def test_order_agents_have_no_say_over_api_keys(member_of):
    order_agent = member_of("Order agents")

    assert not any(order_agent.has_perm(f"core.{action}_apikey") for action in ("add", "change", "view", "delete"))


def test_integration_admins_manage_api_keys_but_cannot_delete_them(member_of):
    integration_admin = member_of("Integration admins")

    assert integration_admin.has_perm("core.add_apikey")
    assert integration_admin.has_perm("core.change_apikey")
    assert integration_admin.has_perm("core.view_apikey")
    # Keys are revoked, never deleted: the record of who had access stays.
    assert not integration_admin.has_perm("core.delete_apikey")


def test_integration_admins_can_see_scheduled_tasks_and_configure_places(member_of):
    integration_admin = member_of("Integration admins")

    assert integration_admin.has_perm("django_celery_beat.view_periodictask")
    assert integration_admin.has_perm("django_celery_beat.change_periodictask")
    assert integration_admin.has_perm("catalogue.add_merchant")
    assert integration_admin.has_perm("catalogue.change_venue")
    assert integration_admin.has_perm("loyalty.view_contact")
    assert not integration_admin.has_perm("loyalty.change_contact")
    assert integration_admin.has_perm("loyalty.add_contactexternalid")


def test_marketers_edit_contacts_and_catalogue_groupings_but_not_places_or_keys(member_of):
    marketer = member_of("Marketers")

    assert marketer.has_perm("loyalty.view_contact")
    assert marketer.has_perm("loyalty.change_contact")
    assert marketer.has_perm("loyalty.view_contactexternalid")
    assert not marketer.has_perm("loyalty.add_contactexternalid")
    assert marketer.has_perm("catalogue.change_product")
    assert marketer.has_perm("catalogue.add_brand")
    assert marketer.has_perm("catalogue.view_merchant")
    assert not marketer.has_perm("catalogue.change_merchant")
    assert not marketer.has_perm("core.view_apikey")
    assert not marketer.has_perm("core.add_apikey")


def test_no_staff_group_may_touch_users_or_groups():
    """Changing users or groups would let a member grant themselves anything."""
    for name in STAFF_GROUPS:
        assert not {permission for permission in group_permissions(name) if permission.startswith("auth.")}, name


def test_granting_permissions_again_is_harmless():
    """The grant helper runs in several apps' migrations; running one again must not fail or duplicate."""
    before = group_permissions("Order agents")

    staff_group_permissions_grant(apps=migration_state_apps(), grants={"Order agents": {"loyalty.contact": ("view",)}})

    assert group_permissions("Order agents") == before


def test_granting_an_unknown_permission_fails_loudly():
    with pytest.raises(RuntimeError, match="Missing permissions"):
        staff_group_permissions_grant(apps=migration_state_apps(), grants={"Marketers": {"loyalty.contact": ("fly",)}})
