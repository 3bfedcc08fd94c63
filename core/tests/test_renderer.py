"""The API's orjson renderer writes DRF's JSONRenderer's very bytes."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from core.api.renderers import FastJSONRenderer

fast, standard = FastJSONRenderer(), JSONRenderer()

SAMPLE = {
    "text": 'Ünïcödé ✓ "quoted" \\ back\nslash \t tab \x01',
    "separators": "line\u2028paragraph\u2029end",
    "numbers": [0, -1, 2**63 - 1, -(2**63), 1.5, 0.1],
    "flags": [True, False, None],
    "nested": {"a": [{"b": []}, {}], "c": ()},
    "decimal": Decimal("12.50"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "utc": datetime.datetime(2026, 11, 22, 5, 8, 34, 947125, tzinfo=datetime.UTC),
    "zoned": datetime.datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Stockholm")),
    "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
    "date": datetime.date(2026, 2, 28),
    "time": datetime.time(23, 59, 1, 500),
    "duration": datetime.timedelta(minutes=15),
    "lazy": gettext_lazy("This field is required."),
    "set": {"only"},
    1: "int key",
    None: "none key",
}


def test_the_same_bytes_as_drf_for_every_kind_of_value():
    assert fast.render(SAMPLE) == standard.render(SAMPLE)


def test_javascript_line_separators_are_escaped_as_drf_does():
    assert fast.render({"s": "a\u2028b\u2029c"}) == b'{"s":"a\\u2028b\\u2029c"}'


def test_integers_orjson_refuses_fall_back_to_drf():
    data = {"big": 2**70, "huge": [-(2**80)]}

    assert (
        fast.render(data)
        == standard.render(data)
        == b'{"big":1180591620717411303424,"huge":[-1208925819614629174706176]}'
    )


def test_indentation_asked_for_in_the_accept_header_is_drfs():
    data = {"a": [1, 2]}

    assert fast.render(data, "application/json; indent=2") == standard.render(data, "application/json; indent=2")
    assert b"\n" in fast.render(data, "application/json; indent=2")


def test_no_body_for_none():
    assert fast.render(None) == b""


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.uuids()
    | st.datetimes(timezones=st.just(datetime.UTC)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_any_payload_renders_as_drf_renders_it(value):
    assert fast.render({"value": value}) == standard.render({"value": value})
