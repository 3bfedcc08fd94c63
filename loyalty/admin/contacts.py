from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError as DjangoValidationError
from django.forms.models import BaseInlineFormSet
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from core.exceptions import DomainError
from core.exceptions import ValidationError as DomainValidationError
from core.money import check_currency, to_minor
from core.validators import normalize_email, normalize_phone
from loyalty import services
from loyalty.models import Account, Contact, ContactErasure, ContactExternalId
from loyalty.selectors.wallets import wallet_summary
from loyalty.services.wallets import wallet_adjust


class ContactExternalIdFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        for form in self.extra_forms:
            if not form.has_changed() or form.errors:
                continue
            # `livemode` is not on the form: without this a new id would take the model default
            # (live) whatever the contact's mode, and its uniqueness per mode would go unchecked.
            form.instance.livemode = self.instance.livemode
            try:
                form.instance.validate_constraints()
            except DjangoValidationError as error:
                form.add_error(None, error)


class ContactExternalIdInline(TabularInline):
    model = ContactExternalId
    formset = ContactExternalIdFormSet
    fields = ("source", "value", "created_at")
    readonly_fields = ("created_at",)
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        # Identifiers are permanent: existing rows are shown, new ones may be added.
        return ("created_at",)

    def has_change_permission(self, request, obj=None):
        return False


class BalanceAdjustmentForm(forms.Form):
    account = forms.ChoiceField(choices=Account.Kind.choices, widget=UnfoldAdminSelectWidget)
    currency = forms.CharField(
        required=False, max_length=3, widget=UnfoldAdminTextInputWidget, help_text="For money balances, e.g. EUR."
    )
    amount = forms.DecimalField(
        max_digits=14,
        decimal_places=3,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text="Positive to credit, negative to debit. Points are whole numbers.",
    )
    reason = forms.CharField(widget=UnfoldAdminTextareaWidget, help_text="Mandatory; kept on the ledger entry.")

    def clean(self):
        cleaned = super().clean()
        amount, kind = cleaned.get("amount"), cleaned.get("account")
        if amount is None or kind is None:
            return cleaned
        try:
            if kind == Account.Kind.POINTS:
                if amount != amount.to_integral_value():
                    raise forms.ValidationError("Points are whole numbers.")
                cleaned["amount_units"], cleaned["currency"] = int(amount), ""
            else:
                cleaned["currency"] = check_currency(cleaned.get("currency") or "")
                cleaned["amount_units"] = to_minor(amount, cleaned["currency"])
        except DomainError as error:
            raise forms.ValidationError(error.message) from None
        return cleaned


class ContactAdminForm(forms.ModelForm):
    # Erasure is its own audited action, never a status picked from a list.
    status = forms.ChoiceField(choices=[(Contact.Status.ACTIVE, "Active"), (Contact.Status.BLOCKED, "Blocked")])

    class Meta:
        model = Contact
        fields = (
            "first_name",
            "last_name",
            "email",
            "mobile_phone",
            "birth_date",
            "status",
            "email_consent",
            "sms_consent",
            "attributes",
            "livemode",
        )

    def _normalized(self, field, normalize):
        value = self.cleaned_data.get(field)
        if not value:
            return None
        try:
            return normalize(value)
        except DomainValidationError as error:
            raise forms.ValidationError(error.message) from None

    def clean_email(self):
        return self._normalized("email", normalize_email)

    def clean_mobile_phone(self):
        return self._normalized("mobile_phone", normalize_phone)


@admin.register(Contact)
class ContactAdmin(ModelAdmin):
    form = ContactAdminForm
    list_display = ("member_number", "full_name", "email", "mobile_phone", "status_badge", "livemode", "created_at")
    list_filter = ("status", "livemode", "email_consent", "sms_consent")
    search_fields = ("member_number", "email", "mobile_phone", "first_name", "last_name", "external_ids__value")
    readonly_fields = ("member_number", "created_at", "updated_at", "consents_updated_at", "wallet_overview")
    inlines = [ContactExternalIdInline]
    actions_detail = ["adjust_balance", "erase_contact"]
    fieldsets = (
        (None, {"fields": ("member_number", "status", "livemode")}),
        ("Wallet", {"fields": ("wallet_overview",)}),
        ("Profile", {"fields": ("first_name", "last_name", "birth_date")}),
        ("Identifiers", {"fields": ("email", "mobile_phone")}),
        ("Consents", {"fields": ("email_consent", "sms_consent", "consents_updated_at")}),
        ("Custom attributes", {"fields": ("attributes",)}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )

    @display(description="Balances")
    def wallet_overview(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        summary = wallet_summary(contact=obj)
        points = summary["points"]
        parts = [f"{points['available']:,} points available ({points['pending']:,} pending)"]
        parts += [f"{money['kind']}: {money['available']} {money['currency']}" for money in summary["money"]]
        tier = summary["tier"]["current"]
        parts.append(f"tier: {tier['name'] if tier else 'none'}")
        ledger = reverse("admin:loyalty_ledgerentry_changelist") + f"?contact__id__exact={obj.pk}"
        return format_html('{} · <a class="text-primary-600" href="{}">ledger</a>', " · ".join(parts), ledger)

    def has_delete_permission(self, request, obj=None):
        # A contact with a wallet is never deleted: erasure anonymises it and keeps the ledger.
        return False

    def has_adjust_balance_permission(self, request, obj=None):
        return request.user.has_perm("loyalty.adjust_balance")

    @action(description="Adjust balance", url_path="adjust-balance", permissions=["adjust_balance"], icon="balance")
    def adjust_balance(self, request, object_id):
        contact = self.get_object(request, object_id)
        form = BalanceAdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                wallet_adjust(
                    contact=contact,
                    kind=data["account"],
                    amount=data["amount_units"],
                    currency=data["currency"],
                    reason=data["reason"],
                    staff_user=request.user,
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, f"Adjusted {data['account']} by {data['amount']} ({data['reason']}).")
                return redirect(reverse("admin:loyalty_contact_change", args=[contact.pk]))
        return TemplateResponse(
            request,
            "admin/loyalty/adjust_balance.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Adjust balance of {contact}",
                "contact": contact,
                "form": form,
            },
        )

    def has_erase_contact_permission(self, request, obj=None):
        return request.user.has_perm("loyalty.erase_contact")

    @action(description="Erase personal data (GDPR)", url_path="erase", permissions=["erase_contact"], icon="delete")
    def erase_contact(self, request, object_id):
        contact = self.get_object(request, object_id)
        if request.method == "POST":
            services.contact_erase(contact=contact, erased_by=f"user:{request.user.get_username()}")
            self.message_user(request, "The contact's personal data was erased; the ledger is kept anonymously.")
            return redirect(reverse("admin:loyalty_contact_change", args=[contact.pk]))
        return TemplateResponse(
            request,
            "admin/loyalty/erase_contact.html",
            {**self.admin_site.each_context(request), "title": f"Erase {contact}", "contact": contact},
        )

    @display(description="Name")
    def full_name(self, obj):
        return f"{obj.first_name} {obj.last_name}".strip()

    @display(description="Status", label={"active": "success", "blocked": "danger", "erased": "info"})
    def status_badge(self, obj):
        return obj.status

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return (*self.readonly_fields, "livemode")
        return self.readonly_fields

    def get_search_results(self, request, queryset, search_term):
        """Phones are stored E.164: a search typed the way people write numbers still finds them."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term and any(char.isdigit() for char in term):
            try:
                phone = normalize_phone(term)
            except DomainValidationError:
                return results, may_have_duplicates
            # From the queryset given, not the manager: the list filters (e.g. mode) still apply.
            results |= queryset.filter(mobile_phone=phone)
        return results, may_have_duplicates

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        consents = {"email": data["email_consent"], "sms": data["sms_consent"]}
        if change:
            changes = {field: data[field] for field in form.changed_data if field in data}
            if {"email_consent", "sms_consent"} & set(form.changed_data):
                changes["consents"] = consents
            if "attributes" in changes:
                # The form holds the whole new dict but the service merges: name removed keys.
                new_attributes = changes["attributes"] or {}
                removed = {key: None for key in form.initial.get("attributes") or {} if key not in new_attributes}
                changes["attributes"] = {**removed, **new_attributes}
            services.contact_update(contact=obj, **changes)
            return
        created = services.contact_create(
            livemode=data["livemode"],
            first_name=data["first_name"],
            last_name=data["last_name"],
            email=data["email"],
            mobile_phone=data["mobile_phone"],
            birth_date=data["birth_date"],
            consents=consents,
            attributes=data["attributes"] or {},
        )
        obj.__dict__.update(created.__dict__)
        obj._state.adding = False

    def save_formset(self, request, form, formset, change):
        if formset.model is not ContactExternalId:
            return super().save_formset(request, form, formset, change)
        # New external ids go through the service like the API's, not straight to the table: the
        # change feed, the identifiers-added hooks (waiting purchases) and contact.updated must
        # see them. Existing ids cannot be changed or deleted here (identifiers are permanent).
        added = [
            {"source": inline.cleaned_data.get("source") or "", "id": inline.cleaned_data["value"]}
            for inline in formset.extra_forms
            if inline.has_changed() and inline.cleaned_data.get("value")
        ]
        if added:
            services.contact_update(contact=form.instance, external_ids=added)
        values = [entry["id"] for entry in added]
        # What the admin's change message reads from a saved formset.
        formset.new_objects = list(ContactExternalId.objects.filter(contact=form.instance, value__in=values))
        formset.changed_objects, formset.deleted_objects = [], []


@admin.register(ContactErasure)
class ContactErasureAdmin(ModelAdmin):
    """The erasure audit: read-only (who erased which contact, when)."""

    list_display = ("contact_id", "erased_by", "erased_at", "livemode")
    list_filter = ("livemode",)
    search_fields = ("contact__id", "erased_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
