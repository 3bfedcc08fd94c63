"""Message variants: the same template rule in the services, the management API and the admin;
variants belong to one mode like every piece of configuration."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from core import services
from core.exceptions import Conflict, ValidationError
from core.messages import SAMPLE_FACTS, message_render
from core.models import MessageVariant
from core.tests.assertions import assert_error_body

pytestmark = pytest.mark.django_db

VARIANTS = "/api/v1/message-variants"
SMS = {"to": "{{ contact.mobile_phone }}", "text": "Hi {{ contact.first_name }}, {{ offer.name }} is yours."}


# --- services -----------------------------------------------------------------------------------


def test_a_variant_is_created_with_a_checked_template():
    variant = services.message_variant_create(livemode=False, name=" sms ", template=SMS, description="gateway")

    assert (variant.name, variant.livemode, variant.template) == ("sms", False, SMS)


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({}, "template"),
        (["not", "an", "object"], "template"),
        ({"text": "Hi {{ contact.first_name }"}, "template.text"),
        ({"nested": {"list": ["ok", "{{ }}"]}}, "template.nested.list.1"),
    ],
)
def test_a_malformed_template_is_refused_naming_where(template, field):
    with pytest.raises(ValidationError) as refused:
        services.message_variant_create(livemode=False, name="sms", template=template)

    assert refused.value.parameters[0]["name"] == field
    assert not MessageVariant.objects.exists()


def test_a_name_is_unique_per_mode_only():
    services.message_variant_create(livemode=False, name="sms", template=SMS)
    services.message_variant_create(livemode=True, name="sms", template=SMS)

    with pytest.raises(Conflict) as refused:
        services.message_variant_create(livemode=False, name="sms", template={"other": "shape"})

    assert refused.value.parameters == [{"name": "name", "value": "sms"}]


def test_an_invalid_update_changes_nothing():
    variant = services.message_variant_create(livemode=False, name="sms", template=SMS)

    with pytest.raises(ValidationError):
        services.message_variant_update(variant=variant, name="renamed", template={"text": "{{ oops"})

    assert MessageVariant.objects.get(pk=variant.pk).name == "sms"


# --- management API -----------------------------------------------------------------------------


def test_management_api_creates_lists_reads_changes_and_deletes_a_variant(management_client):
    created = management_client.post(VARIANTS, {"name": "sms", "template": SMS}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["name"], body["livemode"], body["template"], body["description"]) == ("sms", False, SMS, "")
    detail = f"{VARIANTS}/{body['id']}"

    assert [row["id"] for row in management_client.get(VARIANTS).json()["results"]] == [body["id"]]
    assert management_client.get(detail).json() == body

    patched = management_client.patch(detail, {"description": "SMS gateway"}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["description"], patched.json()["template"]) == ("SMS gateway", SMS)

    assert management_client.delete(detail).status_code == 204
    assert_error_body(management_client.get(detail), 404, "NOT_FOUND", ["id", body["id"]])


def test_a_creation_repeated_with_its_idempotency_key_replays_the_first_answer(management_client):
    first = management_client.post(
        VARIANTS, {"name": "sms", "template": SMS}, format="json", HTTP_IDEMPOTENCY_KEY="variant-1"
    )
    again = management_client.post(
        VARIANTS, {"name": "sms", "template": SMS}, format="json", HTTP_IDEMPOTENCY_KEY="variant-1"
    )

    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert MessageVariant.objects.count() == 1


def test_a_malformed_template_is_a_400_naming_the_value(management_client):
    response = management_client.post(
        VARIANTS, {"name": "sms", "template": {"text": "Hi {{ contact.first_name"}}, format="json"
    )

    assert_error_body(response, 400, "VALIDATION_ERROR", ["template.text"])


def test_a_taken_name_is_a_409(management_client):
    management_client.post(VARIANTS, {"name": "sms", "template": SMS}, format="json")

    response = management_client.post(VARIANTS, {"name": "sms", "template": SMS}, format="json")

    assert_error_body(response, 409, "CONFLICT", ["name", "sms"])


@pytest.mark.parametrize(
    ("body", "parameters"),
    [
        ({"name": "sms", "template": SMS, "mode": "live"}, ["mode"]),
        ({"template": SMS}, ["name"]),
        ({"name": 7, "template": SMS}, ["name"]),
    ],
)
def test_unknown_missing_or_mistyped_fields_are_400(management_client, body, parameters):
    assert_error_body(management_client.post(VARIANTS, body, format="json"), 400, "VALIDATION_ERROR", parameters)


def test_variants_of_the_other_mode_do_not_exist(management_client, make_client):
    live_management = make_client(livemode=True, scopes=("management",))
    variant = services.message_variant_create(livemode=False, name="sms", template=SMS)

    assert_error_body(live_management.get(f"{VARIANTS}/{variant.pk}"), 404, "NOT_FOUND")
    assert_error_body(live_management.patch(f"{VARIANTS}/{variant.pk}", {"name": "x"}, format="json"), 404, "NOT_FOUND")
    assert_error_body(live_management.delete(f"{VARIANTS}/{variant.pk}"), 404, "NOT_FOUND")
    assert live_management.get(VARIANTS).json()["results"] == []
    assert MessageVariant.objects.get(pk=variant.pk).name == "sms"


def test_an_integration_key_may_not_manage_variants(client_test):
    assert_error_body(client_test.get(VARIANTS), 403, "PERMISSION_DENIED")
    assert_error_body(
        client_test.post(VARIANTS, {"name": "sms", "template": SMS}, format="json"), 403, "PERMISSION_DENIED"
    )


def test_the_endpoints_are_in_the_openapi_schema(client):
    import yaml

    paths = yaml.safe_load(client.get("/api/schema/").content)["paths"]

    assert {"get", "post"} <= set(paths["/api/v1/message-variants"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/message-variants/{id}"])
    assert "409" in paths["/api/v1/message-variants/{id}"]["delete"]["responses"]


# --- admin --------------------------------------------------------------------------------------


def _admin_form(**fields):
    import json

    data = {"name": "sms", "description": "", "livemode": "", "template": json.dumps(SMS)}
    data.update(fields)
    return data


def test_the_admin_adds_a_variant_in_the_chosen_mode(admin_client):
    response = admin_client.post("/admin/core/messagevariant/add/", _admin_form())

    assert response.status_code == 302, response.context["adminform"].form.errors
    variant = MessageVariant.objects.get()
    assert (variant.name, variant.livemode, variant.template) == ("sms", False, SMS)


def test_the_admin_refuses_a_malformed_template_in_the_form(admin_client):
    response = admin_client.post(
        "/admin/core/messagevariant/add/", _admin_form(template='{"text": "Hi {{ contact.first_name"}')
    )

    assert response.status_code == 200
    assert "template.text" in str(response.context["adminform"].form.errors["template"])
    assert not MessageVariant.objects.exists()


def test_the_admin_refuses_a_rename_to_a_name_taken_in_the_mode(admin_client):
    services.message_variant_create(livemode=False, name="push", template=SMS)
    variant = services.message_variant_create(livemode=False, name="sms", template=SMS)

    response = admin_client.post(f"/admin/core/messagevariant/{variant.pk}/change/", _admin_form(name="push"))

    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert MessageVariant.objects.get(pk=variant.pk).name == "sms"


def test_the_change_page_previews_the_template_rendered_with_sample_facts(admin_client):
    variant = services.message_variant_create(livemode=False, name="sms", template=SMS)

    response = admin_client.get(f"/admin/core/messagevariant/{variant.pk}/change/")

    assert response.status_code == 200
    rendered = message_render(SMS, SAMPLE_FACTS)
    assert rendered["to"] == SAMPLE_FACTS["contact"]["mobile_phone"]
    assert rendered["text"] in response.content.decode()


def test_marketers_may_manage_message_variants(django_user_model):
    marketer = django_user_model.objects.create_user(username="marketer", is_staff=True)
    marketer.groups.add(Group.objects.get(name="Marketers"))
    marketer = django_user_model.objects.get(pk=marketer.pk)

    assert all(marketer.has_perm(f"core.{action}_messagevariant") for action in ("add", "change", "view", "delete"))
