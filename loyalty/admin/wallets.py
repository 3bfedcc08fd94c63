import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from core.exceptions import DomainError
from core.money import format_minor
from loyalty.models import (
    Account,
    EarningRule,
    EarningRuleExclusion,
    LedgerEntry,
    Payout,
    Program,
    SpendCondition,
    SpendConditionRestriction,
    Tier,
)
from loyalty.selectors.wallets import liability_report
from loyalty.services import earning as earning_services
from loyalty.services import tiers as tier_services
from loyalty.services.wallets import payout_settle


def _amount(value: int, account: Account) -> str:
    return (
        str(value)
        if account.kind == Account.Kind.POINTS
        else f"{format_minor(value, account.currency)} {account.currency}"
    )


class ReadOnlyAdminMixin:
    """Balances and ledger rows are facts: shown, never edited in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Program)
class ProgramAdmin(ModelAdmin):
    list_display = ("name", "livemode", "points_expiry_months", "pending_days", "spend_order", "tier_basis")
    fieldsets = (
        (None, {"fields": ("name", "livemode", "currency")}),
        ("Points", {"fields": ("points_expiry_months", "pending_days", "negative_points_policy")}),
        ("Spending", {"fields": ("spend_order", "spend_requires_otp", "otp_ttl_seconds", "otp_max_attempts")}),
        (
            "Tiers",
            {"fields": ("tier_basis", "tier_window_months", "tier_downgrade_policy", "tier_downgrade_grace_days")},
        ),
        ("Receipt claims", {"fields": ("self_service_claims", "claim_window_days", "claims_per_day")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return ("livemode",) if obj else ()


class TierAdminForm(forms.ModelForm):
    class Meta:
        model = Tier
        fields = ("name", "rank", "threshold", "multiplier", "description", "is_active", "livemode")


@admin.register(Tier)
class TierAdmin(ModelAdmin):
    form = TierAdminForm
    list_display = ("name", "rank", "threshold", "multiplier", "is_active", "livemode")
    list_filter = ("livemode", "is_active")
    ordering = ("livemode", "rank")

    def save_model(self, request, obj, form, change):
        try:
            if change:
                tier_services.tier_update(tier=obj)
            else:
                tier_services.tier_create(
                    livemode=obj.livemode, **{f: getattr(obj, f) for f in tier_services.TIER_FIELDS}
                )
        except DomainError as error:
            self.message_user(request, error.message, level=messages.ERROR)


class EarningRuleExclusionInline(TabularInline):
    model = EarningRuleExclusion
    extra = 0
    max_num = 50
    validate_max = True
    fields = ("kind", "value")


class EarningRuleForm(forms.ModelForm):
    class Meta:
        model = EarningRule
        fields = (
            "name",
            "livemode",
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
        )

    def clean(self):
        cleaned = super().clean()
        candidate = EarningRule(
            livemode=cleaned.get("livemode", self.instance.livemode),
            currency=cleaned.get("currency") or "",
            points_per_unit=cleaned.get("points_per_unit"),
            valid_from=cleaned.get("valid_from"),
            valid_until=cleaned.get("valid_until"),
            tier=cleaned.get("tier"),
        )
        try:
            earning_services.check_rule(candidate)  # the same checks the management API runs
        except DomainError as error:
            raise forms.ValidationError(error.message) from None
        cleaned["currency"] = candidate.currency
        return cleaned


@admin.register(EarningRule)
class EarningRuleAdmin(ModelAdmin):
    form = EarningRuleForm
    inlines = [EarningRuleExclusionInline]
    list_display = (
        "name",
        "currency",
        "points_per_unit",
        "tier",
        "rounding",
        "is_active",
        "valid_from",
        "valid_until",
        "livemode",
    )
    list_filter = ("livemode", "is_active", "currency", "tier")
    list_select_related = ("tier",)
    search_fields = ("name",)


class SpendConditionRestrictionInline(TabularInline):
    model = SpendConditionRestriction
    extra = 0
    max_num = 50
    validate_max = True
    fields = ("kind", "value")


@admin.register(SpendCondition)
class SpendConditionAdmin(ModelAdmin):
    inlines = [SpendConditionRestrictionInline]
    list_display = ("name", "days_of_week", "hour_from", "hour_until", "livemode")
    list_filter = ("livemode",)
    filter_horizontal = ("venues",)
    search_fields = ("name",)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ("contact", "kind", "currency", "balance_display", "pending_display", "updated_at", "ledger_link")
    list_filter = ("kind", "currency", "livemode")
    list_select_related = ("contact",)
    search_fields = ("contact__member_number", "contact__email")

    @display(description="Balance")
    def balance_display(self, obj):
        return _amount(obj.balance, obj)

    @display(description="Pending")
    def pending_display(self, obj):
        return _amount(obj.pending, obj)

    @display(description="Ledger")
    def ledger_link(self, obj):
        url = reverse("admin:loyalty_ledgerentry_changelist") + f"?account__id__exact={obj.pk}"
        return format_html('<a class="text-primary-600" href="{}">entries</a>', url)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "contact",
        "account_kind",
        "kind_badge",
        "amount_display",
        "balance_after_display",
        "source_type",
        "source_id",
        "created_by",
    )
    list_filter = ("kind", "source_type", "account__kind", "livemode")
    list_select_related = ("contact", "account", "created_by")
    search_fields = ("contact__member_number", "source_id", "idempotency_key")
    date_hierarchy = "created_at"
    actions_list = ["open_liability"]

    @display(description="Account")
    def account_kind(self, obj):
        return f"{obj.account.kind} {obj.account.currency}".strip()

    @display(
        description="Kind",
        label={
            "earn": "success",
            "spend": "info",
            "expire": "warning",
            "reverse": "danger",
            "adjust": "warning",
            "payout": "info",
        },
    )
    def kind_badge(self, obj):
        return obj.kind

    @display(description="Amount")
    def amount_display(self, obj):
        return _amount(obj.amount, obj.account)

    @display(description="Balance after")
    def balance_after_display(self, obj):
        return _amount(obj.balance_after, obj.account)

    def has_view_liability_permission(self, request, obj=None):
        return request.user.has_perm("loyalty.view_liability")

    @action(description="Liability report", url_path="liability-report", permissions=["view_liability"])
    def open_liability(self, request):
        return redirect("admin:loyalty_liability")

    def get_urls(self):
        return [
            path("liability/", self.admin_site.admin_view(self.liability_view), name="loyalty_liability"),
            *super().get_urls(),
        ]

    def liability_view(self, request):
        if not self.has_view_liability_permission(request):
            raise PermissionDenied
        livemode = request.GET.get("mode", "live") != "test"
        report = liability_report(livemode=livemode)
        return TemplateResponse(
            request,
            "admin/loyalty/liability.html",
            {
                **self.admin_site.each_context(request),
                "title": "Liability",
                "livemode": livemode,
                "mode_label": "Live" if livemode else "Test",
                "report": report,
                **liability_context(report),
            },
        )


def liability_context(report: dict) -> dict:
    """Turn the report into cards, tables and chart data for the template."""
    points = next((row for row in report["balances"] if row["kind"] == "points"), None)
    expiring_points = next((row for row in report["expiring"] if row["account__kind"] == "points"), {})
    cards = [
        {
            "title": "Outstanding points",
            "value": f"{(points or {}).get('outstanding') or 0:,}",
            "note": f"{(points or {}).get('pending') or 0:,} pending · {(points or {}).get('debt') or 0:,} debt",
        },
        {
            "title": "Points expiring in 30 days",
            "value": f"{expiring_points.get('within_30') or 0:,}",
            "note": f"{expiring_points.get('within_90') or 0:,} within 90 days",
        },
        {
            "title": "Money balances",
            "value": str(sum(1 for row in report["balances"] if row["kind"] != "points")),
            "note": "balance kinds and currencies with money outstanding",
        },
    ]

    def money_or_points(kind, currency, value):
        return f"{value or 0:,}" if kind == "points" else f"{format_minor(value or 0, currency)} {currency}"

    balances_table = {
        "headers": ["Balance", "Currency", "Outstanding", "Pending", "Debt"],
        "rows": [
            [
                row["kind"],
                row["currency"] or "points",
                money_or_points(row["kind"], row["currency"], row["outstanding"]),
                money_or_points(row["kind"], row["currency"], row["pending"]),
                money_or_points(row["kind"], row["currency"], row["debt"]),
            ]
            for row in report["balances"]
        ],
    }
    expiring_table = {
        "headers": ["Balance", "Currency", "Within 30 days", "Within 60 days", "Within 90 days"],
        "rows": [
            [
                row["account__kind"],
                row["account__currency"] or "points",
                *(
                    money_or_points(row["account__kind"], row["account__currency"], row[f"within_{days}"])
                    for days in (30, 60, 90)
                ),
            ]
            for row in report["expiring"]
        ],
    }
    months = list(report["monthly_points"])
    chart_data = json.dumps(
        {
            "labels": months,
            "datasets": [
                {"label": label, "data": [report["monthly_points"][month][kind] for month in months]}
                for kind, label in (("earn", "Earned"), ("spend", "Spent"), ("expire", "Expired"))
            ],
        }
    )
    monthly_table = {
        "headers": ["Month", "Earned", "Spent", "Expired"],
        "rows": [
            [month, *(f"{values[kind]:,}" for kind in ("earn", "spend", "expire"))]
            for month, values in reversed(report["monthly_points"].items())
        ],
    }
    return {
        "cards": cards,
        "balances_table": balances_table,
        "expiring_table": expiring_table,
        "chart_data": chart_data,
        "monthly_table": monthly_table,
    }


@admin.register(Payout)
class PayoutAdmin(ModelAdmin):
    list_display = ("created_at", "contact", "amount_display", "method", "status_badge", "source_id", "settled_at")
    list_filter = ("status", "method", "currency", "livemode")
    list_select_related = ("contact",)
    search_fields = ("contact__member_number", "source_id", "reference")
    readonly_fields = (
        "contact",
        "currency",
        "amount",
        "status",
        "method",
        "reference",
        "source_id",
        "idempotency_key",
        "failure_reason",
        "created_at",
        "settled_at",
        "livemode",
    )
    actions = ["mark_paid", "mark_failed"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @display(description="Amount")
    def amount_display(self, obj):
        return f"{format_minor(obj.amount, obj.currency)} {obj.currency}"

    @display(description="Status", label={"pending": "warning", "paid": "success", "failed": "danger"})
    def status_badge(self, obj):
        return obj.status

    def _settle(self, request, queryset, paid: bool):
        done = 0
        for payout in queryset.filter(status=Payout.Status.PENDING):
            try:
                payout_settle(
                    payout=payout, paid=paid, failure_reason="" if paid else f"Marked failed by {request.user}"
                )
                done += 1
            except DomainError as error:
                self.message_user(request, error.message, level=messages.WARNING)
        self.message_user(request, f"{done} pay-out(s) marked {'paid' if paid else 'failed'}.")

    @action(description="Mark selected pay-outs paid", permissions=["change"])
    def mark_paid(self, request, queryset):
        self._settle(request, queryset, paid=True)

    @action(description="Mark selected pay-outs failed (money returns to the wallet)", permissions=["change"])
    def mark_failed(self, request, queryset):
        self._settle(request, queryset, paid=False)
