"""StrictSerializer.validated: unknown fields refused, and a serializer used again (its fields
built once per thread) answers each call from that call's data alone."""

from __future__ import annotations

import threading

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from core.api.serializers import ContactReferenceSerializer, StrictSerializer


class Line(StrictSerializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField(min_value=1)


class Order(StrictSerializer):
    contact = ContactReferenceSerializer()
    lines = Line(many=True)
    note = serializers.CharField(required=False)

    def validate(self, attrs):
        if attrs.get("note") == "nested":
            # A call inside another of the same class builds its own serializer.
            inner = Order.validated({"contact": {"id": attrs["contact"]["id"]}, "lines": [], "note": "inner"})
            attrs["inner_note"] = inner["note"]
        return attrs


CONTACT = {"id": "12345678-1234-5678-1234-567812345678"}


def test_each_call_sees_only_its_own_data():
    first = Order.validated({"contact": CONTACT, "lines": [{"sku": "A", "quantity": 1}], "note": "one"})
    second = Order.validated({"contact": CONTACT, "lines": []})

    assert first["note"] == "one" and len(first["lines"]) == 1
    assert "note" not in second and second["lines"] == []


def test_an_error_does_not_leak_into_the_next_call():
    with pytest.raises(ValidationError) as refused:
        Order.validated({"contact": CONTACT, "lines": [{"sku": "A", "quantity": 0}], "colour": "red"})
    assert "colour" in refused.value.detail

    assert Order.validated({"contact": CONTACT, "lines": [{"sku": "B", "quantity": 2}]})["lines"][0]["sku"] == "B"
    with pytest.raises(ValidationError) as refused:
        Order.validated({"contact": CONTACT, "lines": [{"sku": "A", "quantity": 0}]})
    assert list(refused.value.detail) == ["lines"]


def test_a_call_inside_another_of_the_same_class():
    data = Order.validated({"contact": CONTACT, "lines": [], "note": "nested"})

    assert data["note"] == "nested" and data["inner_note"] == "inner"
    assert Order.validated({"contact": CONTACT, "lines": [], "note": "after"})["note"] == "after"


def test_threads_do_not_share_a_serializer():
    results, errors = {}, []

    def validate(n):
        try:
            for _ in range(200):
                data = Order.validated({"contact": CONTACT, "lines": [{"sku": f"S{n}", "quantity": n}] * n})
                assert [line["sku"] for line in data["lines"]] == [f"S{n}"] * n
            results[n] = True
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=validate, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4


def test_options_build_a_fresh_serializer():
    assert Order.validated({"note": "partial"}, partial=True) == {"note": "partial"}
    with pytest.raises(ValidationError):
        Order.validated({"note": "not partial"})
