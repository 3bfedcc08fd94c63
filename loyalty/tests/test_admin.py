import json

import pytest

from core.validators import is_valid_member_number
from loyalty.models import Contact
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/loyalty/contact/"
ADD = "/admin/loyalty/contact/add/"
NO_INLINES = {"external_ids-TOTAL_FORMS": "0", "external_ids-INITIAL_FORMS": "0"}


def _found(admin_client, query, **filters):
    response = admin_client.get(CHANGELIST, {"q": query, **filters})
    assert response.status_code == 200
    return {contact.pk for contact in response.context["cl"].result_list}


@pytest.fixture
def ana():
    contact = ContactFactory(first_name="Ana", email="ana.svensson@example.com", mobile_phone="+46707234567")
    ContactExternalIdFactory(contact=contact, source="pos", value="CARD-5512")
    return contact


@pytest.fixture
def others():
    return ContactFactory.create_batch(3)


def test_a_superuser_finds_a_contact_by_member_number(admin_client, ana, others):
    assert _found(admin_client, ana.member_number) == {ana.pk}


def test_a_superuser_finds_a_contact_by_email(admin_client, ana, others):
    assert _found(admin_client, "ana.svensson@example.com") == {ana.pk}


def test_a_superuser_finds_a_contact_by_an_external_id_value(admin_client, ana, others):
    assert _found(admin_client, "CARD-5512") == {ana.pk}


@pytest.mark.parametrize("typed", ["070 723 45 67", "070-723 45 67", "0046707234567", "+46 70 723 45 67"])
def test_a_superuser_finds_a_contact_by_a_phone_typed_the_way_people_write_it(admin_client, ana, others, typed):
    assert _found(admin_client, typed) == {ana.pk}


def test_a_phone_search_still_honours_the_list_filters(admin_client, ana, others):
    live_twin = ContactFactory(livemode=True, mobile_phone="+46707234567")

    assert _found(admin_client, "070 723 45 67", livemode__exact="1") == {live_twin.pk}
    assert _found(admin_client, "070 723 45 67", livemode__exact="0") == {ana.pk}


def test_a_search_for_a_number_nobody_has_finds_nothing(admin_client, ana, others):
    assert _found(admin_client, "070 999 99 99") == set()


def test_adding_a_contact_in_the_admin_generates_a_member_number_and_normalises_the_phone(admin_client):
    response = admin_client.post(
        ADD,
        {
            "first_name": "Ana",
            "last_name": "Svensson",
            "email": "Ana@Example.COM",
            "mobile_phone": "070 723 45 67",
            "birth_date": "",
            "status": "active",
            "email_consent": "on",
            "attributes": json.dumps({"club": "north"}),
            **NO_INLINES,
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact = Contact.objects.get()
    assert is_valid_member_number(contact.member_number)
    assert len(contact.member_number) == 12
    assert contact.mobile_phone == "+46707234567"
    assert contact.email == "Ana@example.com"
    assert contact.email_consent is True
    assert contact.sms_consent is False
    assert contact.attributes == {"club": "north"}
    assert contact.livemode is False


def test_adding_a_contact_with_an_invalid_phone_in_the_admin_shows_the_error(admin_client):
    response = admin_client.post(ADD, {"first_name": "Ana", "mobile_phone": "12", "status": "active", **NO_INLINES})

    assert response.status_code == 200
    assert "mobile_phone" in response.context["adminform"].form.errors
    assert Contact.objects.count() == 0


def test_adding_a_contact_with_a_taken_phone_in_another_format_is_refused_in_the_form(admin_client, ana):
    response = admin_client.post(
        ADD, {"first_name": "Copy", "mobile_phone": "0707234567", "status": "active", **NO_INLINES}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Contact.objects.count() == 1


def test_adding_a_contact_with_an_external_id_in_the_admin_gives_the_id_the_contacts_mode(admin_client):
    response = admin_client.post(
        ADD,
        {
            "first_name": "Ana",
            "status": "active",
            "external_ids-TOTAL_FORMS": "1",
            "external_ids-INITIAL_FORMS": "0",
            "external_ids-0-source": "pos",
            "external_ids-0-value": "CARD-1",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact = Contact.objects.get()
    assert contact.livemode is False
    assert list(contact.external_ids.values_list("livemode", "source", "value")) == [(False, "pos", "CARD-1")]


def _change_form_data(contact, **overrides):
    data = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email or "",
        "mobile_phone": contact.mobile_phone or "",
        "birth_date": "",
        "status": contact.status,
        "attributes": json.dumps(contact.attributes),
        "external_ids-TOTAL_FORMS": str(contact.external_ids.count()),
        "external_ids-INITIAL_FORMS": str(contact.external_ids.count()),
    }
    for index, external_id in enumerate(contact.external_ids.order_by("pk")):
        data[f"external_ids-{index}-id"] = str(external_id.pk)
        data[f"external_ids-{index}-contact"] = str(contact.pk)
    data.update(overrides)
    return data


def test_adding_an_external_id_another_contact_of_the_mode_holds_is_a_form_error(admin_client, ana):
    contact = ContactFactory()
    data = _change_form_data(contact)
    data.update({"external_ids-TOTAL_FORMS": "1", "external_ids-0-source": "pos", "external_ids-0-value": "CARD-5512"})

    response = admin_client.post(f"/admin/loyalty/contact/{contact.pk}/change/", data)

    assert response.status_code == 200
    assert any(inline.formset.total_error_count() for inline in response.context["inline_admin_formsets"])
    assert contact.external_ids.count() == 0


def test_an_external_id_held_in_the_other_mode_may_be_added_in_the_admin(admin_client, ana):
    live_contact = ContactFactory(livemode=True)
    data = _change_form_data(live_contact)
    data.update({"external_ids-TOTAL_FORMS": "1", "external_ids-0-source": "pos", "external_ids-0-value": "CARD-5512"})

    response = admin_client.post(f"/admin/loyalty/contact/{live_contact.pk}/change/", data)

    assert response.status_code == 302
    assert list(live_contact.external_ids.values_list("livemode", "value")) == [(True, "CARD-5512")]


def test_changing_a_contacts_phone_in_the_admin_normalises_it(admin_client):
    contact = ContactFactory(first_name="Ana")

    response = admin_client.post(
        f"/admin/loyalty/contact/{contact.pk}/change/", _change_form_data(contact, mobile_phone="070 723 45 67")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact.refresh_from_db()
    assert contact.mobile_phone == "+46707234567"
    assert contact.first_name == "Ana"


def test_removing_an_attribute_in_the_admin_removes_it(admin_client):
    contact = ContactFactory(attributes={"club": "north", "pet": "cat"})

    response = admin_client.post(
        f"/admin/loyalty/contact/{contact.pk}/change/",
        _change_form_data(contact, attributes=json.dumps({"club": "south"})),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact.refresh_from_db()
    assert contact.attributes == {"club": "south"}


def test_the_admin_cannot_set_a_contact_to_erased(admin_client):
    contact = ContactFactory()

    response = admin_client.post(
        f"/admin/loyalty/contact/{contact.pk}/change/", _change_form_data(contact, status="erased")
    )

    assert response.status_code == 200
    assert "status" in response.context["adminform"].form.errors
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
