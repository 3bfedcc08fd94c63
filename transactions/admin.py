from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from core.exceptions import DomainError
from core.money import format_minor
from loyalty.models import LedgerEntry
from transactions.models import (
    Claim,
    ProductSync,
    Return,
    Transaction,
    TransactionDiscount,
    TransactionEvent,
    TransactionItem,
)
from transactions.services import processing, reversals


class ReadOnlyInline(TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TransactionItemInline(ReadOnlyInline):
    model = TransactionItem
    fields = (
        "line_number",
        "sku",
        "family",
        "brand",
        "quantity",
        "unit_price",
        "amount",
        "discount_allocated",
        "points_earned",
        "returned_quantity",
    )
    readonly_fields = fields


class TransactionDiscountInline(ReadOnlyInline):
    model = TransactionDiscount
    fields = ("amount", "issued_offer", "description")
    readonly_fields = fields


class TransactionEventInline(ReadOnlyInline):
    model = TransactionEvent
    fields = ("created_at", "kind", "detail")
    readonly_fields = fields
    verbose_name_plural = "processing history"


@admin.register(Transaction)
class TransactionAdmin(ModelAdmin):
    list_display = (
        "external_id",
        "occurred_at",
        "contact",
        "venue",
        "channel",
        "amount_display",
        "points_earned",
        "status_badge",
        "livemode",
    )
    list_filter = ("status", "channel", "venue", "livemode")
    list_select_related = ("contact", "venue")
    search_fields = (
        "external_id",
        "id",
        "receipt_number",
        "contact__member_number",
        "contact__email",
        "venue__name",
        "venue__number",
    )
    date_hierarchy = "occurred_at"
    inlines = [TransactionItemInline, TransactionDiscountInline, TransactionEventInline]
    readonly_fields = (
        "external_id",
        "status",
        "contact",
        "match_key_type",
        "match_key",
        "occurred_at",
        "received_at",
        "processed_at",
        "currency",
        "venue",
        "channel",
        "receipt_number",
        "amount",
        "discount_total",
        "tax_total",
        "payments",
        "custom",
        "spend_requested",
        "spend_reduction",
        "spend_approved",
        "points_earned",
        "attempts",
        "failure_reason",
        "awards",
        "livemode",
    )
    exclude = ("fingerprint", "response", "match_source")
    actions = ["reprocess_failed", "void_selected"]
    actions_detail = ["reprocess_one", "void_one"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @display(description="Amount")
    def amount_display(self, obj):
        return f"{format_minor(obj.amount, obj.currency)} {obj.currency}"

    @display(
        description="Status",
        label={
            "queued": "info",
            "processed": "success",
            "failed": "danger",
            "unmatched": "warning",
            "anonymous": "info",
            "voided": "danger",
        },
    )
    def status_badge(self, obj):
        return obj.status

    @display(description="Awards and spends")
    def awards(self, obj):
        entries = LedgerEntry.objects.filter(livemode=obj.livemode, source_id=obj.external_id).select_related("account")
        if not entries:
            return "-"
        return format_html_join(
            format_html("<br>"),
            '<a class="text-primary-600" href="{}">{} {} on {}</a>',
            (
                (
                    reverse("admin:loyalty_ledgerentry_change", args=[entry.pk]),
                    entry.kind,
                    entry.amount,
                    entry.account.kind,
                )
                for entry in entries
            ),
        )

    def _run(self, request, transactions, service, verb):
        done = 0
        for txn in transactions:
            try:
                if service(txn):
                    done += 1
            except DomainError as error:
                self.message_user(request, f"{txn.external_id}: {error.message}", level=messages.WARNING)
        self.message_user(request, f"{done} transaction(s) {verb}.")

    @action(description="Re-process selected failed transactions")
    def reprocess_failed(self, request, queryset):
        self._run(
            request,
            queryset.filter(status=Transaction.Status.FAILED),
            lambda txn: processing.transaction_requeue(transaction_id=txn.pk, reason=f"re-process by {request.user}"),
            "queued again",
        )

    @action(description="Void selected transactions")
    def void_selected(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda txn: reversals.transaction_void(transaction=txn, reason=f"voided by {request.user}"),
            "voided",
        )

    @action(description="Re-process", url_path="reprocess", icon="replay")
    def reprocess_one(self, request, object_id):
        self.reprocess_failed(request, Transaction.objects.filter(pk=object_id))
        return self._back(object_id)

    @action(description="Void", url_path="void", icon="block")
    def void_one(self, request, object_id):
        self.void_selected(request, Transaction.objects.filter(pk=object_id))
        return self._back(object_id)

    def _back(self, object_id):
        return redirect(reverse("admin:transactions_transaction_change", args=[object_id]))


@admin.register(Return)
class ReturnAdmin(ModelAdmin):
    list_display = ("external_id", "original", "contact", "amount", "points_reversed", "occurred_at", "livemode")
    list_select_related = ("original", "contact")
    search_fields = ("external_id", "original__external_id", "contact__member_number")
    readonly_fields = (
        "external_id",
        "original",
        "contact",
        "occurred_at",
        "currency",
        "amount",
        "points_reversed",
        "items",
        "created_at",
        "livemode",
    )
    exclude = ("fingerprint", "response")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProductSync)
class ProductSyncAdmin(ModelAdmin):
    list_display = (
        "id",
        "status",
        "total",
        "processed",
        "created_count",
        "updated_count",
        "error_count",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    readonly_fields = (
        "status",
        "total",
        "processed",
        "created_count",
        "updated_count",
        "errors",
        "created_at",
        "finished_at",
        "livemode",
    )
    exclude = ("rows",)

    def has_add_permission(self, request):
        return False

    @display(description="Errors")
    def error_count(self, obj):
        return len(obj.errors or [])


@admin.register(Claim)
class ClaimAdmin(ModelAdmin):
    list_display = (
        "created_at",
        "contact",
        "kind",
        "code_format",
        "merchant_number",
        "venue_number",
        "receipt_number",
        "amount",
        "transaction",
        "livemode",
    )
    list_filter = ("kind", "code_format", "livemode")
    list_select_related = ("contact", "transaction")
    search_fields = ("receipt_number", "merchant_number", "venue_number", "contact__member_number", "code")
    date_hierarchy = "created_at"
    readonly_fields = (
        "contact",
        "kind",
        "code_format",
        "code",
        "merchant_number",
        "venue_number",
        "receipt_number",
        "amount",
        "transaction",
        "created_at",
        "livemode",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
