from rest_framework import serializers

from core.api.serializers import StrictCharField, StrictSerializer
from loyalty.models import Contact, ContactExternalId


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
