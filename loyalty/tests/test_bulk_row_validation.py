"""Bulk rows are checked in plain Python when it can vouch for them, else by the serializer:
either way the outcome is the serializer's (same validated data, same errors)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError as DRFValidationError

from loyalty.api.serializers import BulkContactRowSerializer, bulk_contact_row_validated

texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", " Ana ", "a\x00b", "\ud800", "Åsa", "x" * 64, "x" * 65, "y" * 101, "z" * 255]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
)
external_id = st.dictionaries(st.sampled_from(["source", "id", "other"]), scalars, max_size=3)
row_values = {
    "match_key": st.one_of(texts, st.sampled_from(["POS-1", "ana@example.com", "070 723 45 67"]), scalars),
    "match_key_type": st.one_of(
        st.sampled_from(["member_number", "mobile_phone", "email", "external_id", "phone"]), scalars
    ),
    "source": st.one_of(st.sampled_from(["pos", ""]), scalars),
    "first_name": st.one_of(texts, scalars),
    "last_name": texts,
    "email": st.one_of(st.sampled_from(["ana@example.com", None, ""]), scalars),
    "mobile_phone": st.one_of(st.sampled_from(["+46707234567", None]), scalars),
    "birth_date": st.one_of(
        st.sampled_from(["1990-02-03", "19900203", "1990-02-30", "1990-2-3", "2026-W01-1", "", "1990-02-03T00:00"]),
        scalars,
    ),
    "external_ids": st.one_of(
        st.lists(external_id, max_size=21), st.lists(external_id, min_size=19, max_size=22), scalars
    ),
    "consents": st.one_of(
        st.dictionaries(st.sampled_from(["email", "sms", "post"]), st.one_of(st.booleans(), scalars), max_size=3),
        scalars,
    ),
    "attributes": st.one_of(st.dictionaries(texts, json_values, max_size=3), json_values),
    "unknown": scalars,
}
rows = st.fixed_dictionaries(
    {"match_key": row_values["match_key"], "match_key_type": row_values["match_key_type"]},
    optional={name: strategy for name, strategy in row_values.items() if name not in ("match_key", "match_key_type")},
) | st.dictionaries(st.sampled_from(sorted(row_values)), scalars, max_size=4)


def by_the_serializer(row):
    try:
        return dict(BulkContactRowSerializer().run_validation(row))
    except DRFValidationError as error:
        return ("error", error.detail)


def by_the_bulk_check(row_serializer, row):
    try:
        return bulk_contact_row_validated(row_serializer, row)
    except DRFValidationError as error:
        return ("error", error.detail)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows)
def test_the_plain_check_and_the_serializer_agree_on_any_row(row):
    assert by_the_bulk_check(BulkContactRowSerializer(), row) == by_the_serializer(row)


@pytest.mark.parametrize(
    "row",
    [
        {"match_key": " POS-1 ", "match_key_type": "external_id", "source": "pos", "first_name": " Åsa "},
        {
            "match_key": "ana@example.com",
            "match_key_type": "email",
            "email": None,
            "mobile_phone": "",
            "birth_date": "1990-02-03",
            "external_ids": [{"id": "X-1"}, {"source": "pos", "id": " X-2 "}],
            "consents": {"email": True, "sms": False},
            "attributes": {"store": "S1", "tags": [1, 2.5, None]},
        },
    ],
)
def test_ordinary_rows_are_checked_without_the_serializer(row, monkeypatch):
    row_serializer = BulkContactRowSerializer()
    expected = by_the_serializer(row)
    monkeypatch.setattr(row_serializer, "run_validation", lambda data: pytest.fail("the serializer was needed"))

    assert bulk_contact_row_validated(row_serializer, row) == expected


def test_a_row_the_plain_check_cannot_vouch_for_gets_the_serializers_error():
    row = {"match_key": "P-1", "match_key_type": "email", "source": "pos", "first_name": "x" * 101}

    with pytest.raises(DRFValidationError) as raised:
        bulk_contact_row_validated(BulkContactRowSerializer(), row)

    assert set(raised.value.detail) == {"first_name"}


plausible_rows = st.fixed_dictionaries(
    {
        "match_key": st.text(min_size=1, max_size=12),
        "match_key_type": st.sampled_from(["member_number", "mobile_phone", "email", "external_id"]),
    },
    optional={
        "first_name": st.text(max_size=110),
        "email": st.one_of(st.none(), st.text(max_size=20)),
        "birth_date": st.dates().map(lambda day: day.isoformat()),
        "external_ids": st.lists(
            st.fixed_dictionaries({"id": st.text(max_size=6)}, optional={"source": st.text(max_size=4)}), max_size=3
        ),
        "consents": st.fixed_dictionaries({}, optional={"email": st.booleans(), "sms": st.booleans()}),
        "attributes": st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=plausible_rows)
def test_the_plain_check_and_the_serializer_agree_on_plausible_rows(row):
    assert by_the_bulk_check(BulkContactRowSerializer(), row) == by_the_serializer(row)
