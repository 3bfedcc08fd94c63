from rest_framework import serializers

from catalogue.models import Merchant, Product, Venue
from core.api.serializers import StrictCharField, StrictSerializer


class MerchantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Merchant
        fields = ("id", "livemode", "number", "name", "created_at", "updated_at")


class MerchantInputSerializer(StrictSerializer):
    number = StrictCharField(max_length=32)
    name = StrictCharField(max_length=200)


class VenueSerializer(serializers.ModelSerializer):
    merchant_number = serializers.CharField(source="merchant.number", read_only=True)

    class Meta:
        model = Venue
        fields = (
            "id",
            "livemode",
            "merchant",
            "merchant_number",
            "number",
            "name",
            "time_zone",
            "address",
            "is_active",
            "created_at",
            "updated_at",
        )


class VenueInputSerializer(StrictSerializer):
    merchant = serializers.UUIDField(help_text="The merchant's id.")
    number = StrictCharField(max_length=32)
    name = StrictCharField(max_length=200)
    time_zone = StrictCharField(max_length=64, required=False, help_text="IANA name, e.g. Europe/Stockholm.")
    address = StrictCharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class ProductSerializer(serializers.ModelSerializer):
    family = serializers.CharField(source="family.code", allow_null=True, read_only=True, default=None)
    brand = serializers.CharField(source="brand.code", allow_null=True, read_only=True, default=None)

    class Meta:
        model = Product
        fields = ("sku", "livemode", "name", "family", "brand", "created_at", "updated_at")


class ProductInputSerializer(StrictSerializer):
    sku = StrictCharField(max_length=64)
    name = StrictCharField(max_length=200, required=False, allow_blank=True)
    family = StrictCharField(
        max_length=64,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Product family code; created if new.",
    )
    brand = StrictCharField(
        max_length=64, required=False, allow_null=True, allow_blank=True, help_text="Brand code; created if new."
    )
