import pytest

pytestmark = pytest.mark.django_db


def test_registered_contact_is_found_by_its_phone_in_another_format(client_test):
    response = client_test.post(
        "/api/v1/contacts",
        {"first_name": "Ana", "mobile_phone": "+46 70-723 45 67", "email": "Ana@Example.com"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["mobile_phone"] == "+46707234567"
    assert body["livemode"] is False

    found = client_test.get("/api/v1/contacts", {"match_key": "0707234567", "match_key_type": "mobile_phone"})
    assert found.status_code == 200
    assert [contact["id"] for contact in found.json()["results"]] == [body["id"]]
