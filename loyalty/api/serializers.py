from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.serializers import MATCH_KEY_TYPES, StrictCharField, StrictSerializer
from core.money import format_minor
from loyalty.models import Account, Contact, ContactChange, ContactExternalId, EarningRule, LedgerEntry, Tier


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


class ContactFeedSerializer(ContactSerializer):
    """ContactSerializer's very output, from the external ids the feed selector attached."""

    external_ids = serializers.SerializerMethodField()

    def get_external_ids(self, contact) -> list[dict[str, str]]:
        return contact.external_id_pairs


def contact_change_page_data(page) -> dict:
    """The feed page as the API shows it: each contact serialized once per page, by one list
    serializer (building a serializer's fields per contact would cost more than the query)."""
    contacts = list(page.contacts.values())
    represented = {
        contact.pk: data
        for contact, data in zip(contacts, ContactFeedSerializer(contacts, many=True).data, strict=True)
    }
    results = []
    for change in page.changes:
        representation = represented.get(change.contact_id)
        if representation is None or change.kind == ContactChange.Kind.ERASED:
            representation = {"id": str(change.contact_id)}
        results.append(
            {"change_id": change.id, "kind": change.kind, "contact": representation, "changed_at": change.created_at}
        )
    return {"results": results, "next_cursor": page.next_cursor, "has_more": page.has_more}


class BulkContactRowSerializer(ContactInputSerializer):
    match_key = StrictCharField(max_length=254)
    match_key_type = serializers.ChoiceField(choices=MATCH_KEY_TYPES)
    source = StrictCharField(max_length=64, required=False, allow_blank=True)

    def validate(self, attrs):
        if "source" in attrs and attrs["match_key_type"] != "external_id":
            raise serializers.ValidationError({"source": ["Only external_id match keys take a source."]})
        return attrs


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
