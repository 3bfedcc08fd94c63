from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget

from core.exceptions import DomainError
from loyalty.models import Tier
from offers import selectors
from offers.models import IssuedOffer, IssuedOfferTransition, Offer, OfferIssueJob, OfferRestriction
from offers.services import bulk, definitions, issued


class OfferRestrictionInline(TabularInline):
    model = OfferRestriction
    fields = ("mode", "kind", "value")
    extra = 0
    max_num = 50
    validate_max = True
    verbose_name = "catalogue condition"


class OfferForm(forms.ModelForm):
    image_url = forms.URLField(required=False, assume_scheme="https")
    days_of_week = forms.TypedMultipleChoiceField(
        choices=[(1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun")],
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every day.",
    )
    channels = forms.MultipleChoiceField(
        choices=Offer.Channel.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every channel.",
    )

    class Meta:
        model = Offer
        fields = (
            "name",
            "description",
            "image_url",
            "terms",
            "status",
            "valid_from",
            "valid_until",
            "livemode",
            "benefit_type",
            "benefit_value",
            "currency",
            "applies_to",
            "cap_amount",
            "min_spend",
            "min_quantity",
            "channels",
            "venues",
            "days_of_week",
            "hour_from",
            "hour_until",
            "redemptions_per_contact",
            "budget_count",
            "budget_amount",
            "priority",
            "is_exclusive",
            "is_external",
            "message_variant",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        variants = self.fields.get("message_variant")
        if variants is not None:
            # Names are unique per mode only: say which mode each one is (check_offer refuses
            # a variant of the other mode).
            variants.label_from_instance = lambda variant: f"{variant.name} ({'live' if variant.livemode else 'test'})"
            variants.help_text = "External offers: the message offer.issued carries (Message variants in Core)."

    def clean(self):
        cleaned = super().clean()
        candidate = Offer(**{name: cleaned.get(name) for name in definitions.OFFER_FIELDS if name in cleaned})
        candidate.benefit_value = cleaned.get("benefit_value") or 0
        candidate.livemode = cleaned.get("livemode", self.instance.livemode)
        candidate.message_variant = cleaned.get("message_variant")
        try:
            definitions.check_offer(candidate)  # the same rules as the management API
        except DomainError as error:
            raise forms.ValidationError(error.message) from None
        cleaned["currency"] = candidate.currency
        return cleaned


@admin.register(Offer)
class OfferAdmin(ModelAdmin):
    form = OfferForm
    inlines = [OfferRestrictionInline]
    list_display = (
        "name",
        "status_badge",
        "benefit",
        "valid_from",
        "valid_until",
        "issued_count",
        "redeemed_count",
        "redemption_rate",
        "discount_given",
        "priority",
        "livemode",
    )
    list_filter = ("status", "benefit_type", "is_external", "livemode")
    search_fields = ("name",)
    filter_horizontal = ("venues",)
    readonly_fields = ("issued_count", "redeemed_count", "discount_given")
    actions_detail = ["issue_to_contacts"]
    fieldsets = (
        (None, {"fields": ("name", "status", "livemode", "description", "image_url", "terms")}),
        ("Validity", {"fields": ("valid_from", "valid_until")}),
        ("Benefit", {"fields": ("benefit_type", "benefit_value", "currency", "applies_to", "cap_amount")}),
        (
            "Conditions",
            {"fields": ("min_spend", "min_quantity", "channels", "venues", "days_of_week", "hour_from", "hour_until")},
        ),
        (
            "Limits and stacking",
            {
                "fields": (
                    "redemptions_per_contact",
                    "budget_count",
                    "budget_amount",
                    "priority",
                    "is_exclusive",
                )
            },
        ),
        ("External offer system", {"fields": ("is_external", "message_variant")}),
        ("Counters", {"fields": ("issued_count", "redeemed_count", "discount_given")}),
    )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.save()
            return
        # Never write the counters back: redemptions move them with conditional UPDATEs, and a
        # redemption landing while the form was open would otherwise be undone.
        counters = {"issued_count", "redeemed_count", "discount_given"}
        obj.save(
            update_fields=[
                field.name
                for field in Offer._meta.concrete_fields
                if not field.primary_key and field.name not in counters
            ]
        )

    @display(
        description="Status", label={"draft": "info", "active": "success", "paused": "warning", "archived": "danger"}
    )
    def status_badge(self, obj):
        return obj.status

    @display(description="Benefit")
    def benefit(self, obj):
        value = format(obj.benefit_value.normalize(), "f")
        return f"{obj.get_benefit_type_display()} {value}"

    @display(description="Redemption rate")
    def redemption_rate(self, obj):
        return f"{obj.redeemed_count / obj.issued_count:.0%}" if obj.issued_count else "-"

    @action(description="Issue to contacts", url_path="issue", icon="send")
    def issue_to_contacts(self, request, object_id):
        offer = self.get_object(request, object_id)
        form = BulkIssueForm(request.POST or None, request.FILES or None, livemode=offer.livemode)
        if request.method == "POST" and form.is_valid():
            numbers = form.all_member_numbers()
            try:
                job = bulk.offer_issue_job_create(
                    offer=offer, member_numbers=numbers, tier=form.cleaned_data.get("tier"), created_by=request.user
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, f"Issuing in the background (job {job.pk}); progress is in Issue jobs.")
                return redirect(reverse("admin:offers_offerissuejob_change", args=[job.pk]))
        return TemplateResponse(
            request,
            "admin/offers/issue.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Issue “{offer.name}”",
                "offer": offer,
                "form": form,
            },
        )


class BulkIssueForm(forms.Form):
    member_numbers = forms.CharField(
        required=False, widget=UnfoldAdminTextareaWidget, help_text="One per line (or separated by commas)."
    )
    csv_file = forms.FileField(
        required=False, help_text="A CSV with a member_number column (or numbers in the first column)."
    )
    tier = forms.ModelChoiceField(
        queryset=Tier.objects.none(),
        required=False,
        widget=UnfoldAdminSelectWidget,
        help_text="Everyone currently in this tier.",
    )

    def __init__(self, *args, livemode: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tier"].queryset = Tier.objects.filter(livemode=livemode)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("csv_file"):
            try:
                cleaned["csv_numbers"] = bulk.member_numbers_from_csv(cleaned["csv_file"].read())
            except DomainError as error:
                raise forms.ValidationError(error.message) from None
        return cleaned

    def all_member_numbers(self) -> list[str]:
        typed = self.cleaned_data.get("member_numbers") or ""
        numbers = [part.strip() for part in typed.replace(",", "\n").splitlines() if part.strip()]
        return numbers + self.cleaned_data.get("csv_numbers", [])


class IssuedOfferTransitionInline(TabularInline):
    model = IssuedOfferTransition
    fields = ("created_at", "action", "from_status", "to_status", "transaction_id", "discount", "actor")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class LockAgeFilter(admin.SimpleListFilter):
    title = "lock"
    parameter_name = "lock"

    def lookups(self, request, model_admin):
        return [("live", "Currently locked"), ("expired", "Lock expired, not yet released")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(status=IssuedOffer.Status.LOCKED, locked_until__gt=now)
        if self.value() == "expired":
            return queryset.filter(status=IssuedOffer.Status.LOCKED, locked_until__lte=now)
        return queryset


class ReconciliationFilter(admin.SimpleListFilter):
    title = "reconciliation"
    parameter_name = "reconciliation"

    def lookups(self, request, model_admin):
        days = selectors.UNRECONCILED_EXTERNAL_OFFER_DAYS
        return [("overdue", f"External, not reconciled after {days} days")]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return selectors.external_offers_unreconciled(queryset=queryset)
        return queryset


@admin.register(IssuedOffer)
class IssuedOfferAdmin(ModelAdmin):
    list_display = (
        "id",
        "offer",
        "contact",
        "status_badge",
        "issued_at",
        "expires_at",
        "locked_transaction_id",
        "lock_age",
        "redeemed_at",
        "external_reference",
    )
    list_filter = (ReconciliationFilter, LockAgeFilter, "status", "offer", "livemode")
    list_select_related = ("offer", "contact")
    search_fields = (
        "id",
        "contact__member_number",
        "contact__email",
        "offer__name",
        "locked_transaction_id",
        "redeemed_transaction_id",
        "external_reference",
    )
    readonly_fields = (
        "offer",
        "contact",
        "status",
        "issued_at",
        "expires_at",
        "locked_transaction_id",
        "locked_at",
        "locked_until",
        "locked_discount",
        "redeemed_transaction_id",
        "redeemed_at",
        "redeemed_discount",
        "external_reference",
        "source",
        "livemode",
    )
    inlines = [IssuedOfferTransitionInline]
    actions = ["unlock_selected", "revoke_selected"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @display(
        description="Status",
        label={
            "available": "success",
            "locked": "warning",
            "redeemed": "info",
            "expired": "danger",
            "revoked": "danger",
        },
    )
    def status_badge(self, obj):
        return obj.status

    @display(description="Lock age")
    def lock_age(self, obj):
        if obj.status != IssuedOffer.Status.LOCKED or obj.locked_at is None:
            return "-"
        minutes = int((timezone.now() - obj.locked_at).total_seconds() // 60)
        expired = obj.locked_until and obj.locked_until <= timezone.now()
        return format_html("{} min{}", minutes, " (expired)" if expired else "")

    def _apply(self, request, queryset, service, verb):
        done = 0
        for issued_offer in queryset:
            try:
                service(issued_offer_id=issued_offer.pk, actor=f"staff:{request.user.username}")
                done += 1
            except DomainError as error:
                self.message_user(request, f"{issued_offer.pk}: {error.message}", level=messages.WARNING)
        self.message_user(request, f"{done} issued offer(s) {verb}.")

    @action(description="Unlock selected")
    def unlock_selected(self, request, queryset):
        self._apply(request, queryset, issued.issued_offer_unlock, "unlocked")

    @action(description="Revoke selected")
    def revoke_selected(self, request, queryset):
        self._apply(request, queryset, issued.issued_offer_revoke, "revoked")


@admin.register(OfferIssueJob)
class OfferIssueJobAdmin(ModelAdmin):
    list_display = (
        "id",
        "offer",
        "status",
        "progress",
        "issued",
        "error_count",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    list_select_related = ("offer", "created_by")
    readonly_fields = (
        "offer",
        "tier",
        "status",
        "total",
        "processed",
        "issued",
        "errors",
        "member_numbers",
        "created_by",
        "created_at",
        "finished_at",
        "livemode",
    )

    def has_add_permission(self, request):
        return False

    @display(description="Progress")
    def progress(self, obj):
        return f"{obj.processed}/{obj.total}"

    @display(description="Errors")
    def error_count(self, obj):
        return len(obj.errors or [])
