import json
import re
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from django.utils import timezone
from django.utils.dateparse import parse_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.fields import _UnvalidatedField
from rest_framework.settings import api_settings
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from core.api.formatting import api_datetime
from core.api.serializers import MATCH_KEY_TYPES, StrictCharField, StrictSerializer
from core.money import format_minor
from loyalty.models import Account, Contact, ContactChange, ContactExternalId, EarningRule, LedgerEntry, Tier
from loyalty.selectors.changes import ContactChangePage, FeedContact


class ExternalIdSerializer(StrictSerializer):
    source = StrictCharField(max_length=64, required=False, allow_blank=True, default="")
    id = StrictCharField(max_length=128)


class ConsentsSerializer(StrictSerializer):
    email = serializers.BooleanField(required=False)
    sms = serializers.BooleanField(required=False)


class ContactInputSerializer(StrictSerializer):
    first_name = StrictCharField(max_length=100, required=False, allow_blank=True)
    last_name = StrictCharField(max_length=100, required=False, allow_blank=True)
    email = StrictCharField(max_length=254, required=False, allow_null=True, allow_blank=True)
    mobile_phone = StrictCharField(
        max_length=32,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Any usual format; stored and returned in E.164.",
    )
    birth_date = serializers.DateField(required=False, allow_null=True)
    external_ids = ExternalIdSerializer(many=True, required=False, max_length=20)
    consents = ConsentsSerializer(required=False)
    attributes = serializers.DictField(required=False, help_text="Custom attributes; on PATCH, merged (null deletes).")


class ContactUpdateSerializer(ContactInputSerializer):
    status = serializers.ChoiceField(choices=[Contact.Status.ACTIVE, Contact.Status.BLOCKED], required=False)


class ContactExternalIdOutputSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="value")

    class Meta:
        model = ContactExternalId
        fields = ("source", "id")


class ContactSerializer(serializers.ModelSerializer):
    external_ids = ContactExternalIdOutputSerializer(many=True, read_only=True)
    consents = ConsentsSerializer(read_only=True)

    class Meta:
        model = Contact
        fields = (
            "id",
            "livemode",
            "member_number",
            "status",
            "first_name",
            "last_name",
            "email",
            "mobile_phone",
            "birth_date",
            "external_ids",
            "consents",
            "attributes",
            "created_at",
            "updated_at",
        )


class ContactErasedSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    status = serializers.CharField(read_only=True, help_text="Always `erased`.")


class ContactChangesQuerySerializer(StrictSerializer):
    cursor = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="A next_cursor as received; empty = from the start."
    )
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=1000)


class ContactChangeSerializer(serializers.Serializer):
    change_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ContactChange.Kind.values)
    contact = serializers.DictField(
        help_text="The contact as it is now (as GET /contacts/{id}); only `{id}` once it is erased."
    )
    changed_at = serializers.DateTimeField()


class ContactChangePageSerializer(serializers.Serializer):
    results = ContactChangeSerializer(many=True)
    next_cursor = serializers.CharField(help_text="Always set: store it and resume from it.")
    has_more = serializers.BooleanField(help_text="False: caught up for now; poll again later with next_cursor.")


def contact_feed_representation(contact: FeedContact, zone: tzinfo | None = None) -> dict[str, Any]:
    """ContactSerializer's very output (the same keys in the same order, the same formats) from
    the feed selector's plain values: a ModelSerializer costs more per contact than the page's
    queries. loyalty/tests/test_change_feed_output.py checks the two stay equal."""
    zone = zone or timezone.get_current_timezone()
    return {
        "id": contact.id,
        "livemode": contact.livemode,
        "member_number": contact.member_number,
        "status": contact.status,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "mobile_phone": contact.mobile_phone,
        "birth_date": contact.birth_date.isoformat() if contact.birth_date is not None else None,
        "external_ids": [{"source": source, "id": value} for source, value in contact.external_ids],
        "consents": {"email": contact.email_consent, "sms": contact.sms_consent},
        "attributes": contact.attributes,
        "created_at": api_datetime(contact.created_at, zone),
        "updated_at": api_datetime(contact.updated_at, zone),
    }


def contact_change_page_data(page: ContactChangePage) -> dict[str, Any]:
    """The feed page as the API shows it (ContactChangePageSerializer's shape), each contact
    represented once however many of its changes the page holds."""
    zone = timezone.get_current_timezone()
    represented = {
        contact_id: contact_feed_representation(contact, zone) for contact_id, contact in page.contacts.items()
    }
    results = []
    for change in page.changes:
        representation = represented.get(change.contact_id)
        if representation is None or change.kind == ContactChange.Kind.ERASED:
            representation = {"id": change.contact_id}
        results.append(
            {
                "change_id": change.id,
                "kind": change.kind,
                "contact": representation,
                "changed_at": api_datetime(change.created_at, zone),
            }
        )
    return {"results": results, "next_cursor": page.next_cursor, "has_more": page.has_more}


# DRF's JSONRenderer as configured (UNICODE_JSON, COMPACT_JSON, STRICT_JSON): the same C encoder.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def contact_change_page_json(page: ContactChangePage) -> bytes:
    """JSONRenderer's very bytes for `contact_change_page_data(page)`, written contact by contact:
    the page's thousands of dicts never exist at once. (Alive across the garbage collector's
    young collections they were promoted, and every few pages a full collection walked the
    whole heap: the feed's slowest pages.)"""
    zone = timezone.get_current_timezone()
    encode = _JSON_ENCODER.encode
    contacts = {
        contact_id: encode(contact_feed_representation(contact, zone)) for contact_id, contact in page.contacts.items()
    }
    items = []
    for change in page.changes:
        contact = contacts.get(change.contact_id)
        if contact is None or change.kind == ContactChange.Kind.ERASED:
            contact = encode({"id": change.contact_id})
        items.append(
            f'{{"change_id":{change.id},"kind":{encode(change.kind)},"contact":{contact},'
            f'"changed_at":{encode(api_datetime(change.created_at, zone))}}}'
        )
    text = (
        f'{{"results":[{",".join(items)}],"next_cursor":{encode(page.next_cursor)},'
        f'"has_more":{"true" if page.has_more else "false"}}}'
    )
    # JSONRenderer escapes these two so that the JSON is also valid JavaScript.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class BulkContactRowSerializer(ContactInputSerializer):
    match_key = StrictCharField(max_length=254)
    match_key_type = serializers.ChoiceField(choices=MATCH_KEY_TYPES)
    source = StrictCharField(max_length=64, required=False, allow_blank=True)

    def validate(self, attrs):
        if "source" in attrs and attrs["match_key_type"] != "external_id":
            raise serializers.ValidationError({"source": ["Only external_id match keys take a source."]})
        return attrs


class _NeedsSerializer(Exception):
    """The plain-Python check cannot vouch for this value: let the serializer judge it."""


_SURROGATES = re.compile("[\ud800-\udfff]")
_CHAR_VALIDATORS = (MaxLengthValidator, ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)


def _needs_serializer(value: Any) -> Any:
    raise _NeedsSerializer


def _plain_check(field: serializers.Field) -> Callable[[Any], Any]:
    """A function giving what `field.run_validation(value)` gives for the values that certainly
    pass it, and raising _NeedsSerializer for any other (then the serializer gives its exact
    error, or its value). Built once per serializer: reading a field's settings on every row
    would cost as much as the serializer."""
    if isinstance(field, serializers.ListSerializer):
        return _plain_list_check(field)
    if isinstance(field, serializers.BaseSerializer):
        return _plain_object_check(field)
    check = _plain_scalar_check(field)
    allow_null = field.allow_null

    def checked(value):
        if value is None:
            if allow_null:
                return None
            raise _NeedsSerializer
        return check(value)

    return checked


def _plain_scalar_check(field: serializers.Field) -> Callable[[Any], Any]:
    if isinstance(field, StrictCharField):
        if field.min_length is not None or not all(isinstance(v, _CHAR_VALIDATORS) for v in field.validators):
            return _needs_serializer
        max_length, allow_blank, trim = field.max_length or float("inf"), field.allow_blank, field.trim_whitespace

        def text(value):
            if type(value) is not str:
                raise _NeedsSerializer
            stripped = value.strip() if trim else value
            if not stripped:
                if allow_blank:
                    return ""
                raise _NeedsSerializer
            if len(stripped) > max_length or "\x00" in stripped:
                raise _NeedsSerializer
            if not stripped.isascii() and _SURROGATES.search(stripped):
                raise _NeedsSerializer
            return stripped

        return text
    if field.validators:
        return _needs_serializer
    if type(field) is serializers.BooleanField:

        def boolean(value):
            if type(value) is not bool:
                raise _NeedsSerializer
            return value

        return boolean
    if type(field) is serializers.ChoiceField:
        choices = dict(field.choice_strings_to_values)

        def choice(value):
            if type(value) is not str or value not in choices:
                raise _NeedsSerializer
            return choices[value]

        return choice
    if type(field) is serializers.DateField and _takes_iso_dates_only(field):

        def day(value):
            if type(value) is not str:
                raise _NeedsSerializer
            try:
                parsed = parse_date(value)
            except ValueError:
                parsed = None
            if parsed is None:
                raise _NeedsSerializer
            return parsed

        return day
    if type(field) is serializers.DictField and type(field.child) is _UnvalidatedField:

        def mapping(value):
            if type(value) is not dict:
                raise _NeedsSerializer
            return {str(key): item for key, item in value.items()}

        return mapping
    return _needs_serializer


def _takes_iso_dates_only(field: serializers.DateField) -> bool:
    formats = getattr(field, "input_formats", api_settings.DATE_INPUT_FORMATS)
    return [input_format.lower() for input_format in formats] == [ISO_8601]


def _plain_list_check(serializer: serializers.ListSerializer) -> Callable[[Any], Any]:
    if serializer.validators or type(serializer).validate is not serializers.ListSerializer.validate:
        return _needs_serializer
    child = _plain_check(serializer.child)
    allow_empty, min_length = serializer.allow_empty, serializer.min_length or 0
    max_length = float("inf") if serializer.max_length is None else serializer.max_length

    def listed(value):
        if value is None and serializer.allow_null:
            return None
        if type(value) is not list or not min_length <= len(value) <= max_length or (not value and not allow_empty):
            raise _NeedsSerializer
        return [child(item) for item in value]

    return listed


def _plain_object_check(serializer: serializers.BaseSerializer) -> Callable[[Any], Any]:
    if not isinstance(serializer, StrictSerializer) or serializer.validators:
        return _needs_serializer
    fields = []
    for name, field in serializer.fields.items():
        if field.read_only or field.source != name or hasattr(serializer, f"validate_{name}"):
            return _needs_serializer
        default = field.default if field.default is not serializers.empty else None
        if callable(default):
            return _needs_serializer
        fields.append((name, _plain_check(field), field.required, field.default is not serializers.empty, default))
    names = {name for name, *_rest in fields}
    validate = serializer.validate

    def checked(value):
        if value is None and serializer.allow_null:
            return None
        if type(value) is not dict or not names.issuperset(value):
            raise _NeedsSerializer
        attrs = {}
        for name, check, required, has_default, default in fields:
            if name in value:
                attrs[name] = check(value[name])
            elif required:
                raise _NeedsSerializer
            elif has_default:
                attrs[name] = default
        try:
            return validate(attrs)
        except serializers.ValidationError:
            raise _NeedsSerializer from None

    return checked


def bulk_contact_row_validated(row_serializer: BulkContactRowSerializer, row: Any) -> dict[str, Any]:
    """`row_serializer.run_validation(row)` as a plain dict, most rows checked in plain Python
    (the serializer's machinery costs more than the bulk write's queries for a thousand rows);
    a value the plain check cannot vouch for goes to the serializer, whose judgement (and
    error message) stands. test_bulk_row_validation checks the two agree on generated rows."""
    check = getattr(row_serializer, "_plain_check", None)
    if check is None:
        check = row_serializer._plain_check = _plain_check(row_serializer)
    try:
        return check(row)
    except _NeedsSerializer:
        return dict(row_serializer.run_validation(row))


class BulkContactsInputSerializer(StrictSerializer):
    contacts = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=False,
        help_text="Up to 1,000 rows: match_key, match_key_type, source? and the fields of POST /contacts.",
    )


class BulkRowErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status this row alone would have had (400, 404, 409).")
    code = serializers.CharField()
    message = serializers.CharField()
    parameters = serializers.ListField(child=serializers.CharField())


class BulkRowResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["created", "updated", "error"])
    contact_id = serializers.UUIDField(required=False)
    error = BulkRowErrorSerializer(required=False)


class BulkContactsResultSerializer(serializers.Serializer):
    results = BulkRowResultSerializer(many=True)


class LedgerFilterSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.values, required=False)
    account = serializers.ChoiceField(choices=Account.Kind.values, required=False)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)


class LedgerEntrySerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.kind", help_text="points, open or commerce")
    currency = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField(help_text="Points (integer) or money (decimal string), signed.")
    balance_after = serializers.SerializerMethodField()

    class Meta:
        model = LedgerEntry
        fields = (
            "id",
            "account",
            "currency",
            "kind",
            "amount",
            "balance_after",
            "source_type",
            "source_id",
            "reverses",
            "reason",
            "occurred_at",
            "created_at",
        )

    def get_currency(self, entry) -> str | None:
        return entry.account.currency or None

    def _value(self, entry, value):
        return value if entry.account.kind == Account.Kind.POINTS else format_minor(value, entry.account.currency)

    @extend_schema_field(OpenApiTypes.STR)
    def get_amount(self, entry):
        return self._value(entry, entry.amount)

    @extend_schema_field(OpenApiTypes.STR)
    def get_balance_after(self, entry):
        return self._value(entry, entry.balance_after)


class SpendTokenSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    code = serializers.CharField(help_text="The one-time code; shown only here.")
    expires_at = serializers.DateTimeField()
    max_attempts = serializers.IntegerField()


class _PointsSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    available = serializers.IntegerField()
    pending = serializers.IntegerField()
    debt = serializers.IntegerField()
    next_expiring = serializers.ListField(child=serializers.DictField())


class _MoneySerializer(serializers.Serializer):
    kind = serializers.CharField()
    currency = serializers.CharField()
    balance = serializers.DecimalField(max_digits=20, decimal_places=2)
    available = serializers.DecimalField(max_digits=20, decimal_places=2)
    pending = serializers.DecimalField(max_digits=20, decimal_places=2)
    lots = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Commerce only: remaining, expires_at, spend_conditions.",
    )


class WalletSerializer(serializers.Serializer):
    contact_id = serializers.UUIDField()
    livemode = serializers.BooleanField()
    points = _PointsSerializer()
    money = _MoneySerializer(many=True)
    tier = serializers.DictField(help_text="current, next, qualifying_value, remaining_to_next, basis, window_months")


class TierSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tier
        fields = (
            "id",
            "livemode",
            "name",
            "rank",
            "threshold",
            "multiplier",
            "description",
            "is_active",
            "created_at",
            "updated_at",
        )


class TierInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    rank = serializers.IntegerField(min_value=0, max_value=1000)
    threshold = serializers.IntegerField(min_value=0, help_text="Points, or minor units of the program currency.")
    multiplier = serializers.DecimalField(max_digits=5, decimal_places=2, min_value=0, required=False)
    description = StrictCharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class RestrictionSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=["sku", "family", "brand"])
    value = StrictCharField(max_length=64)


class EarningRuleSerializer(serializers.ModelSerializer):
    exclusions = serializers.SerializerMethodField()

    class Meta:
        model = EarningRule
        fields = (
            "id",
            "livemode",
            "name",
            "is_active",
            "currency",
            "points_per_unit",
            "tier",
            "apply_tier_multiplier",
            "rounding",
            "valid_from",
            "valid_until",
            "expiry_months",
            "pending_days",
            "exclusions",
            "created_at",
            "updated_at",
        )

    @extend_schema_field(RestrictionSerializer(many=True))
    def get_exclusions(self, rule):
        return [{"kind": exclusion.kind, "value": exclusion.value} for exclusion in rule.exclusions.all()]


class EarningRuleInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    is_active = serializers.BooleanField(required=False)
    currency = StrictCharField(max_length=3)
    points_per_unit = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=0)
    tier = serializers.IntegerField(required=False, allow_null=True, help_text="A tier id; empty = everyone.")
    apply_tier_multiplier = serializers.BooleanField(required=False)
    rounding = serializers.ChoiceField(choices=EarningRule.Rounding.values, required=False)
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    expiry_months = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=120)
    pending_days = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=365)
    exclusions = RestrictionSerializer(many=True, required=False, help_text="At most 50 (SKU, family, brand).")
