from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline

from catalogue.models import Brand, Merchant, Product, ProductFamily, Venue


class VenueInline(TabularInline):
    model = Venue
    fields = ("number", "name", "time_zone", "is_active")
    extra = 0
    show_change_link = True


@admin.register(Merchant)
class MerchantAdmin(ModelAdmin):
    list_display = ("name", "number", "livemode", "created_at")
    list_filter = ("livemode",)
    search_fields = ("name", "number")
    inlines = [VenueInline]


@admin.register(Venue)
class VenueAdmin(ModelAdmin):
    list_display = ("name", "number", "merchant", "time_zone", "is_active", "livemode")
    list_filter = ("livemode", "is_active", "merchant")
    list_select_related = ("merchant",)
    search_fields = ("name", "number", "merchant__name", "merchant__number")
    autocomplete_fields = ("merchant",)


@admin.register(ProductFamily)
class ProductFamilyAdmin(ModelAdmin):
    list_display = ("code", "name", "livemode")
    list_filter = ("livemode",)
    search_fields = ("code", "name")


@admin.register(Brand)
class BrandAdmin(ModelAdmin):
    list_display = ("code", "name", "livemode")
    list_filter = ("livemode",)
    search_fields = ("code", "name")


@admin.register(Product)
class ProductAdmin(ModelAdmin):
    list_display = ("sku", "name", "family", "brand", "livemode", "updated_at")
    list_filter = ("livemode", "family", "brand")
    list_select_related = ("family", "brand")
    search_fields = ("sku", "name")
    autocomplete_fields = ("family", "brand")
