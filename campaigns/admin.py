"""Admin of the campaigns app, for marketers.

Campaign definitions are validated by the same checks as the management API
(`campaigns.services.definitions`): the form's `clean` runs `check_campaign` on the campaign it
would save, the restriction and outcome formsets run `check_restrictions` / `check_outcomes` on
their rows. Status changes, simulation and the audience list go through their services; awards
and events are read-only.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminTextareaWidget,
    UnfoldBooleanSwitchWidget,
)

from campaigns.models import (
    Campaign,
    CampaignAudienceMember,
    CampaignAward,
    CampaignOutcome,
    CampaignParticipation,
    CampaignRestriction,
    Event,
)
from campaigns.selectors import goal_progress
from campaigns.services import definitions
from campaigns.services.engine import SYSTEM_EVENT_FOR_TRIGGER
from campaigns.services.events import event_requeue
from campaigns.services.simulation import MAX_DAYS, campaign_simulate
from catalogue.models import MAX_CATALOGUE_RESTRICTIONS
from core.exceptions import DomainError, ValidationError
from core.money import format_minor
from loyalty.models import Tier

PROGRESS_ROWS = 100
# What the change form writes to the campaign row: its definition, never status or counters.
FORM_WRITES = frozenset(definitions.CAMPAIGN_FIELDS) | {"to_tier", "updated_at"}
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
OUTCOME_FIELDS = (
    "kind",
    "points",
    "multiplier",
    "cashback_percent",
    "cashback_amount",
    "cashback_cap",
    "balance",
    "spend_condition",
    "offer",
    "message_variant",
)


def _mode_label(obj) -> str:
    return f"{obj} ({'live' if obj.livemode else 'test'})"


def _error_field(error: DomainError) -> str:
    """The field or list path a domain error names (`parameters[0]["name"]`), or ""."""
    return str(error.parameters[0].get("name", "")) if error.parameters else ""


def _add_domain_error(form: forms.Form, error: DomainError) -> None:
    """Put a service's ValidationError on the field it names when the form has that field
    (`audience_filters.2.value` goes on `audience_filters`), else on the form."""
    field, _, rest = _error_field(error).partition(".")
    if field and field in form.fields:
        index, _, detail = rest.partition(".")
        prefix = f"Filter {int(index) + 1}{f' ({detail})' if detail else ''}: " if index.isdigit() else ""
        form.add_error(field, prefix + error.message)
    else:
        form.add_error(None, error.message)


def _refuse_rows(error: DomainError, rows: list[forms.Form], list_name: str, row_label: str) -> None:
    """Raise a service's error on an inline formset: on the row and field it names
    (`outcomes.1.points`), and as the formset's own error so it is seen above the table."""
    parts = _error_field(error).split(".")
    if len(parts) >= 2 and parts[0] == list_name and parts[1].isdigit() and int(parts[1]) < len(rows):
        row = rows[int(parts[1])]
        field = parts[2] if len(parts) > 2 and parts[2] in row.fields else None
        row.add_error(field, error.message)
        raise forms.ValidationError(f"{row_label} {int(parts[1]) + 1}: {error.message}")
    raise forms.ValidationError(error.message)


def _pk(value):
    return getattr(value, "pk", value)


# --- restrictions and outcomes ------------------------------------------------------------------


class CampaignRestrictionFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        rows = [
            form
            for form in self.forms
            if not self._should_delete_form(form) and (form.instance.pk or form.has_changed())
        ]
        if any(form.errors for form in rows) and len(rows) <= MAX_CATALOGUE_RESTRICTIONS:
            return  # the rows' own errors first; too many rows is worth saying at once
        data = [{key: form.cleaned_data.get(key) or "" for key in ("mode", "kind", "value")} for form in rows]
        try:
            definitions.check_restrictions(data, trigger=self.instance.trigger)
        except DomainError as error:
            _refuse_rows(error, rows, "restrictions", "Catalogue condition")


class CampaignRestrictionInline(TabularInline):
    model = CampaignRestriction
    formset = CampaignRestrictionFormSet
    fields = ("mode", "kind", "value")
    extra = 0
    # The service refuses more than 50 with a clear message; max_num only stops the "add" button.
    max_num = MAX_CATALOGUE_RESTRICTIONS
    validate_max = False
    verbose_name = "catalogue condition"
    verbose_name_plural = "Catalogue conditions (purchase campaigns: which items qualify, at most 50)"


class CampaignOutcomeForm(forms.ModelForm):
    class Meta:
        model = CampaignOutcome
        fields = OUTCOME_FIELDS
        # Each kind reads only its own fields; the others are stored as their defaults.
        help_texts = {
            "points": "Award points: how many.",
            "multiplier": "Multiply the purchase's points (purchase campaigns): 2 = double the base points.",
            "cashback_percent": "Cashback: percent of the qualifying amount (purchase campaigns).",
            "cashback_amount": "Cashback: a fixed amount, integer minor units of the currency (1250 = 12.50).",
            "cashback_cap": "Cashback: the largest amount, integer minor units; empty = no cap.",
            "balance": "Cashback: the balance credited.",
            "spend_condition": "Cashback to the commerce balance: where and when it may be spent.",
            "offer": "Issue an offer: which one (of the campaign's mode).",
            "message_variant": "Send a webhook message: which variant (of the campaign's mode).",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Configuration belongs to one mode: say which (check_outcomes refuses the other mode's).
        for name in ("spend_condition", "offer", "message_variant"):
            if name in self.fields:
                self.fields[name].label_from_instance = _mode_label


class CampaignOutcomeFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        rows = [
            form
            for form in self.forms
            if not self._should_delete_form(form) and (form.instance.pk or form.has_changed())
        ]
        if any(form.errors for form in rows):
            return
        data = [{name: _pk(form.cleaned_data.get(name)) for name in OUTCOME_FIELDS} for form in rows]
        try:
            built = definitions.check_outcomes(data, campaign=self.instance)
        except DomainError as error:
            _refuse_rows(error, rows, "outcomes", "Outcome")
            return
        # Store exactly what the API would: the fields the kind uses, defaults for the others.
        for form, outcome in zip(rows, built, strict=True):
            for name in OUTCOME_FIELDS:
                setattr(form.instance, name, getattr(outcome, name))


class CampaignOutcomeInline(StackedInline):
    model = CampaignOutcome
    form = CampaignOutcomeForm
    formset = CampaignOutcomeFormSet
    extra = 0
    max_num = 20
    verbose_name = "outcome"
    verbose_name_plural = "Outcomes (what the campaign gives when it fires)"


# --- the campaign form --------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    days_of_week = forms.TypedMultipleChoiceField(
        choices=[(1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun")],
        coerce=int,
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="None ticked = every day.",
    )
    channels = forms.MultipleChoiceField(
        choices=[(channel, channel) for channel in sorted(definitions.CHANNELS)],
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="Purchase campaigns; none ticked = every channel.",
    )

    class Meta:
        model = Campaign
        # What the services accept, plus the relations and the two fields the admin owns.
        fields = (*definitions.CAMPAIGN_FIELDS, "status", "livemode", "to_tier", "audience_tiers", "venues")
        help_texts = {
            "min_spend": "Integer minor units of qualifying items (1250 = 12.50 in the campaign's currency).",
            "budget_money": "Total cashback allowed, integer minor units (1250 = 12.50).",
            "goal_target": "Integer minor units for a spend goal (1250 = 12.50), a count for visits or quantity.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requested_status = None
        if "status" in self.fields:
            # A draft is saved as a draft, then launched by campaign_update (which decides
            # between active and scheduled from the window): the same path as the API.
            self.fields["status"].choices = [
                (Campaign.Status.DRAFT, "Draft"),
                (Campaign.Status.ACTIVE, "Launch (active now, or scheduled until it starts)"),
            ]
        for name in ("venues", "audience_tiers", "to_tier"):
            if name in self.fields:
                self.fields[name].label_from_instance = _mode_label

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned  # the fields' own errors first; the rules need every value
        livemode = cleaned.get("livemode", self.instance.livemode)
        candidate = Campaign(pk=self.instance.pk, livemode=livemode, status=self.instance.status)
        for name in definitions.CAMPAIGN_FIELDS:
            if name in cleaned:
                setattr(candidate, name, cleaned[name])
            else:
                setattr(candidate, name, getattr(self.instance, name))
        candidate.to_tier = cleaned.get("to_tier") if "to_tier" in cleaned else self.instance.to_tier
        try:
            definitions.check_campaign(candidate)  # the same rules as the management API
            self._check_lists(candidate, cleaned)
        except DomainError as error:
            _add_domain_error(self, error)
            return cleaned
        for name in ("currency", "audience_filters", "event_filters"):
            cleaned[name] = getattr(candidate, name)
        if cleaned.get("status") and cleaned["status"] != self.instance.status:
            self.requested_status = cleaned["status"]
            cleaned["status"] = self.instance.status  # saved unchanged; launched after the lists
        return cleaned

    def _check_lists(self, candidate: Campaign, cleaned: dict) -> None:
        """What campaign_create/update check of the related lists besides check_campaign."""
        tier = candidate.to_tier
        if tier is not None and tier.livemode != candidate.livemode:
            raise ValidationError.for_field("to_tier", "No such tier in this mode.")
        venues = list(cleaned.get("venues") or [])
        if any(venue.livemode != candidate.livemode for venue in venues):
            raise ValidationError.for_field("venues", "Unknown venue(s) in this mode.")
        if venues and candidate.trigger != Campaign.Trigger.PURCHASE:
            raise ValidationError.for_field("venues", "Venues apply to purchase-triggered campaigns.")
        tiers: list[Tier] = list(cleaned.get("audience_tiers") or [])
        if any(tier.livemode != candidate.livemode for tier in tiers):
            raise ValidationError.for_field("audience_tiers", "Unknown tier(s) in this mode.")
        if candidate.audience == Campaign.Audience.TIERS and not tiers:
            raise ValidationError.for_field("audience_tiers", "A tier audience needs at least one tier.")


# --- the campaign admin -------------------------------------------------------------------------


@admin.register(Campaign)
class CampaignAdmin(ModelAdmin):
    form = CampaignForm
    inlines = [CampaignRestrictionInline, CampaignOutcomeInline]
    list_display = (
        "name",
        "status_badge",
        "trigger",
        "window",
        "priority",
        "given_awards",
        "given_points",
        "money_display",
        "livemode",
    )
    list_filter = ("status", "trigger", "livemode")
    search_fields = ("name",)
    filter_horizontal = ("venues", "audience_tiers")
    actions = ["launch", "pause", "end"]
    actions_detail = ["simulate", "upload_audience", "progress"]
    counters = ("given_awards", "given_points", "money_display", "created_at", "updated_at")

    def get_queryset(self, request):
        # What each campaign has given, summed from its awards (the row's own counters move only
        # for campaigns with a budget, which they guard): three subqueries, no N+1.
        awards = CampaignAward.objects.filter(campaign=OuterRef("pk")).order_by().values("campaign")
        return (
            super()
            .get_queryset(request)
            .annotate(
                awards_given=Coalesce(Subquery(awards.annotate(total=Count("id")).values("total")), 0),
                points_given=Coalesce(Subquery(awards.annotate(total=Sum("points")).values("total")), 0),
                money_given=Coalesce(
                    Subquery(awards.filter(currency=OuterRef("currency")).annotate(total=Sum("money")).values("total")),
                    0,
                ),
            )
        )

    @display(description="Awards", ordering="awards_given")
    def given_awards(self, obj):
        return f"{getattr(obj, 'awards_given', 0):,}"

    @display(description="Points awarded", ordering="points_given")
    def given_points(self, obj):
        return f"{getattr(obj, 'points_given', 0):,}"

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (
                "Basics and window",
                {"fields": ("name", "status", "livemode", "description", "starts_at", "ends_at", "time_zone")},
            ),
            ("Trigger", {"fields": ("trigger", "event_type", "to_tier")}),
            ("Audience", {"fields": ("audience", "audience_tiers", "audience_filters", "audience_list")}),
            (
                "Conditions",
                {
                    "fields": (
                        "currency",
                        "min_spend",
                        "min_quantity",
                        "channels",
                        "venues",
                        "days_of_week",
                        "hour_from",
                        "hour_until",
                        "nth_purchase",
                        "event_filters",
                    )
                },
            ),
            ("Goal", {"fields": ("goal_metric", "goal_target", "goal_period", "goal_period_days")}),
            (
                "Limits and budget",
                {
                    "fields": (
                        "limit_per_contact",
                        "limit_period",
                        "limit_period_days",
                        "budget_awards",
                        "budget_points",
                        "budget_money",
                    )
                },
            ),
            ("Stacking", {"fields": ("priority", "stops_lower_priority")}),
        ]
        if obj is not None:
            fieldsets.append(("Counters", {"fields": self.counters}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["audience_list", *self.counters]
        if obj is not None:
            readonly.append("livemode")  # configuration belongs to one mode for good
            if obj.status != Campaign.Status.DRAFT:
                readonly.append("status")  # moved by the Launch / Pause / End actions
        return readonly

    def save_model(self, request, obj, form, change):
        if not change:
            obj.save()
            return
        # Counters move only by processing's conditional UPDATEs and statuses only by
        # campaign_update and the beat task: writing back the values read when the form was
        # posted would undo a concurrent award (and let a budget be overspent).
        obj.save(update_fields=[field.name for field in Campaign._meta.concrete_fields if field.name in FORM_WRITES])

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        campaign = form.instance
        # The engine caches specs by (id, updated_at): restrictions, outcomes and lists saved
        # after the campaign row must give it a new updated_at.
        Campaign.objects.filter(pk=campaign.pk).update(updated_at=timezone.now())
        if form.requested_status:
            try:
                launched = definitions.campaign_update(campaign=campaign, status=form.requested_status)
            except DomainError as error:
                self.message_user(
                    request, f"Saved as a {campaign.status}, not launched: {error.message}", level=messages.ERROR
                )
            else:
                form.instance.status = launched.status
                self.message_user(request, f"“{launched.name}” is {launched.status}.", level=messages.SUCCESS)

    # --- list columns

    @display(
        description="Status",
        label={"draft": "info", "scheduled": "info", "active": "success", "paused": "warning", "ended": "danger"},
    )
    def status_badge(self, obj):
        return obj.status

    @display(description="Window")
    def window(self, obj):
        if obj.is_evergreen:
            return "Evergreen"
        try:
            zone = zoneinfo.ZoneInfo(obj.time_zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo("UTC")

        def moment(value: datetime | None) -> str:
            return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "…"

        return f"{moment(obj.starts_at)} → {moment(obj.ends_at)}"

    @display(description="Money awarded")
    def money_display(self, obj):
        money = getattr(obj, "money_given", 0)
        if obj.currency:
            return f"{format_minor(money, obj.currency)} {obj.currency}"
        return str(money)

    @display(description="Uploaded list")
    def audience_list(self, obj):
        if obj is None or obj.pk is None:
            return "Save the campaign, then upload its list (audience: an uploaded list)."
        if obj.audience != Campaign.Audience.LIST:
            return "-"
        count = CampaignAudienceMember.objects.filter(campaign=obj).count()
        url = reverse("admin:campaigns_campaign_upload_audience", args=[obj.pk])
        return format_html('{} contact(s) · <a class="text-primary-600" href="{}">upload</a>', count, url)

    # --- status actions

    def _move(self, request, queryset, status: str, verb: str) -> None:
        moved: dict[str, int] = {}
        for campaign in queryset:
            if campaign.status == status:
                self.message_user(request, f"“{campaign.name}” is already {status}.", level=messages.WARNING)
                continue
            try:
                updated = definitions.campaign_update(campaign=campaign, status=status)
            except DomainError as error:
                self.message_user(request, f"“{campaign.name}”: {error.message}", level=messages.ERROR)
            else:
                moved[updated.status] = moved.get(updated.status, 0) + 1
        if moved:
            summary = ", ".join(f"{count} {status}" for status, count in sorted(moved.items()))
            self.message_user(request, f"{sum(moved.values())} campaign(s) {verb}: {summary}.", level=messages.SUCCESS)

    @action(description="Launch selected campaigns", permissions=["change"])
    def launch(self, request, queryset):
        self._move(request, queryset, Campaign.Status.ACTIVE, "launched")

    @action(description="Pause selected campaigns", permissions=["change"])
    def pause(self, request, queryset):
        self._move(request, queryset, Campaign.Status.PAUSED, "paused")

    @action(description="End selected campaigns", permissions=["change"])
    def end(self, request, queryset):
        self._move(request, queryset, Campaign.Status.ENDED, "ended")

    # --- pages linked from the change page

    def _campaign(self, request, object_id) -> Campaign:
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404("No such campaign.")
        return campaign

    def _page(self, request, template: str, campaign: Campaign, title: str, **context) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"admin/campaigns/{template}",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "campaign": campaign,
                "opts": self.model._meta,
                "change_url": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                **context,
            },
        )

    @action(description="Simulate", url_path="simulate", icon="query_stats", permissions=["simulate"])
    def simulate(self, request, object_id):
        campaign = self._campaign(request, object_id)
        form = SimulationForm(request.GET if "days" in request.GET else None)
        result = None
        if form.is_bound and form.is_valid():
            try:
                result = campaign_simulate(campaign=campaign, days=form.cleaned_data["days"])
            except DomainError as error:
                _add_domain_error(form, error)
        return self._page(
            request,
            "simulate.html",
            campaign,
            f"Simulate “{campaign.name}”",
            form=form,
            result=result,
            **(simulation_context(result) if result else {}),
        )

    # Named permissions, not "app.codename" strings: unfold's system check looks those up in the
    # database, which breaks `migrate` on an empty database.
    def has_simulate_permission(self, request, object_id=None):
        return request.user.has_perm("campaigns.view_campaign")

    def has_progress_permission(self, request, object_id=None):
        return request.user.has_perm("campaigns.view_campaignparticipation")

    def has_audience_upload_permission(self, request, object_id=None):
        if not request.user.has_perm("campaigns.add_campaignaudiencemember"):
            return False
        if object_id is None:
            return True
        campaign = self.get_object(request, unquote(str(object_id)))
        return campaign is not None and campaign.audience == Campaign.Audience.LIST

    @action(
        description="Upload audience list", url_path="audience", icon="upload_file", permissions=["audience_upload"]
    )
    def upload_audience(self, request, object_id):
        campaign = self._campaign(request, object_id)
        form = AudienceUploadForm(request.POST or None, request.FILES or None)
        result = None
        if request.method == "POST" and form.is_valid():
            replace = form.cleaned_data["replace"]
            if replace and not request.user.has_perm("campaigns.delete_campaignaudiencemember"):
                form.add_error("replace", "You may add to the list but not remove from it.")
            else:
                try:
                    result = definitions.campaign_audience_upload(
                        campaign=campaign, content=form.content(), replace=replace
                    )
                except DomainError as error:
                    _add_domain_error(form, error)
                else:
                    form = AudienceUploadForm()  # uploaded: start the next one empty
        members = CampaignAudienceMember.objects.filter(campaign=campaign).count()
        return self._page(
            request,
            "audience_upload.html",
            campaign,
            f"Audience list of “{campaign.name}”",
            form=form,
            result=result,
            members=result["members"] if result else members,
            unmatched_table={
                "headers": ["Line", "Value"],
                "rows": [[row["line"], row["value"]] for row in result["unmatched"]],
            }
            if result
            else None,
        )

    @action(
        description="Progress per contact",
        url_path="progress",
        icon="leaderboard",
        permissions=["progress"],
    )
    def progress(self, request, object_id):
        campaign = self._campaign(request, object_id)
        query = request.GET.get("q", "").strip()
        awards = CampaignAward.objects.filter(campaign=campaign, contact=OuterRef("contact")).order_by()
        participations = (
            CampaignParticipation.objects.filter(campaign=campaign)
            .select_related("contact")
            .annotate(
                awards_count=Coalesce(Subquery(awards.values("contact").annotate(n=Count("id")).values("n")), 0),
                last_award_at=Subquery(awards.order_by("-occurred_at").values("occurred_at")[:1]),
            )
        )
        if query:
            participations = participations.filter(contact__member_number__startswith=query)
        total = participations.count()
        top = list(participations.order_by("-awards_count", "-last_award_at", "pk")[:PROGRESS_ROWS])
        return self._page(
            request,
            "progress.html",
            campaign,
            f"Progress on “{campaign.name}”",
            query=query,
            total=total,
            shown=len(top),
            progress_table=progress_table(campaign, top, timezone.now()),
            awards_url=reverse("admin:campaigns_campaignaward_changelist") + f"?campaign__id__exact={campaign.pk}",
        )


class SimulationForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_DAYS,
        initial=30,
        widget=UnfoldAdminIntegerFieldWidget,
        help_text=f"Replay the last N days (1 to {MAX_DAYS}).",
    )


class AudienceUploadForm(forms.Form):
    members = forms.CharField(
        required=False,
        widget=UnfoldAdminTextareaWidget,
        help_text="Member numbers, emails or mobile phones, one per line (or separated by commas).",
    )
    csv_file = forms.FileField(
        label="CSV file",
        required=False,
        help_text="One member number, email or phone per line, in the first column.",
    )
    replace = forms.BooleanField(
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text="Remove everyone currently on the list first (otherwise the upload adds to it).",
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("csv_file")
        cleaned["file_text"] = ""
        if upload:
            if upload.size > MAX_UPLOAD_BYTES:
                raise forms.ValidationError("The file is larger than 10 MB; split it.")
            try:
                cleaned["file_text"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        if not cleaned["file_text"].strip() and not (cleaned.get("members") or "").strip():
            raise forms.ValidationError("Type some member numbers, emails or phones, or choose a file.")
        return cleaned

    def content(self) -> str:
        """CSV text for the service: the file first (its header line, if any, stays line 1),
        then what was typed, one value per line."""
        typed = (self.cleaned_data.get("members") or "").replace(",", "\n").replace(";", "\n")
        lines = [line.strip() for line in typed.splitlines() if line.strip()]
        return "\n".join(part for part in (self.cleaned_data["file_text"].rstrip("\n"), *lines) if part)


def simulation_context(result: dict) -> dict:
    """Cards, the per-day chart (awards as bars, points as a line on its own axis) and table."""
    reach, cost, currency = result["reach"], result["cost"], result["cost"]["currency"]
    money = f"{cost['money']} {currency}" if currency else "-"
    cards = [
        {"title": "Contacts reached", "value": f"{reach['contacts']:,}", "note": "contacts with at least one award"},
        {
            "title": "Causes that award",
            "value": f"{reach['transactions'] + reach['events']:,}",
            "note": f"{reach['transactions']:,} purchase(s) · {reach['events']:,} event(s); "
            f"{result['evaluated']['transactions']:,} purchase(s) and "
            f"{result['evaluated']['events']:,} event(s) evaluated",
        },
        {"title": "Awards", "value": f"{cost['awards']:,}", "note": f"{cost['points']:,} points · {money}"},
        {
            "title": "Offers and messages",
            "value": f"{cost['offers']:,} · {cost['messages']:,}",
            "note": "offers issued · webhook messages sent",
        },
    ]
    days = result["per_day"]
    chart_data = json.dumps(
        {
            "labels": [day["date"] for day in days],
            "datasets": [
                {
                    "type": "bar",
                    "label": "Awards",
                    "data": [day["awards"] for day in days],
                    "yAxisID": "y",
                    "order": 1,
                    "backgroundColor": "var(--color-primary-300)",
                    "borderRadius": 4,
                    "maxBarThickness": 12,
                },
                {
                    "type": "line",
                    "label": "Points",
                    "data": [day["points"] for day in days],
                    "yAxisID": "points",
                    "borderColor": "var(--color-primary-700)",
                    "backgroundColor": "var(--color-primary-700)",
                    "order": 0,
                    "borderWidth": 2,
                    "pointRadius": 0,
                },
            ],
        }
    )
    chart_options = json.dumps(
        {
            "animation": False,
            "responsive": True,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": True, "align": "end", "position": "top"}},
            "scales": {
                "x": {"grid": {"display": False}, "ticks": {"color": "#9ca3af"}},
                "y": {
                    "beginAtZero": True,
                    "position": "left",
                    "title": {"display": True, "text": "Awards"},
                    "ticks": {"color": "#9ca3af", "precision": 0},
                    "grid": {"display": True},
                },
                "points": {
                    "beginAtZero": True,
                    "position": "right",
                    "title": {"display": True, "text": "Points"},
                    "ticks": {"color": "#9ca3af", "precision": 0},
                    "grid": {"drawOnChartArea": False},
                },
            },
        }
    )
    per_day_table = {
        "headers": ["Day", "Awards", "Contacts", "Points", "Money", "Offers", "Messages"],
        "rows": [
            [
                day["date"],
                f"{day['awards']:,}",
                f"{day['contacts']:,}",
                f"{day['points']:,}",
                f"{day['money']} {currency}" if currency else "-",
                f"{day['offers']:,}",
                f"{day['messages']:,}",
            ]
            for day in reversed(days)
        ],
    }
    return {
        "cards": cards,
        "chart_data": chart_data,
        "chart_options": chart_options,
        "per_day_table": per_day_table,
    }


def progress_table(campaign: Campaign, participations: list[CampaignParticipation], at: datetime) -> dict:
    has_goal = bool(campaign.goal_metric)

    def amount(value: int) -> str:
        if campaign.goal_metric == Campaign.GoalMetric.SPEND and campaign.currency:
            return f"{format_minor(value, campaign.currency)} {campaign.currency}"
        return f"{value:,}"

    headers = ["Member number", "Contact", "Awards", "Last award"]
    if has_goal:
        headers += [f"Goal progress ({campaign.get_goal_metric_display()})", "Period from"]
    rows = []
    for participation in participations:
        contact = participation.contact
        url = reverse("admin:loyalty_contact_change", args=[contact.pk])
        row = [
            format_html('<a class="text-primary-600" href="{}">{}</a>', url, contact.member_number),
            f"{contact.first_name} {contact.last_name}".strip() or "-",
            f"{participation.awards_count:,}",
            timezone.localtime(participation.last_award_at).strftime("%Y-%m-%d %H:%M")
            if participation.last_award_at
            else "-",
        ]
        if has_goal:
            progress = goal_progress(campaign=campaign, contact_id=contact.pk, at=at)
            share = min(100, int(progress["progress"] * 100 / progress["target"])) if progress["target"] else 0
            started = progress["period_started_at"]
            row += [
                f"{amount(progress['progress'])} of {amount(progress['target'])} ({share}%)",
                timezone.localtime(started).strftime("%Y-%m-%d") if started else "campaign start",
            ]
        rows.append(row)
    return {"headers": headers, "rows": rows}


# --- awards and events: read-only ---------------------------------------------------------------


class ReadOnlyAdminMixin:
    """Awards and events are facts: shown, never edited in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CampaignAward)
class CampaignAwardAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = (
        "campaign",
        "member_number",
        "cause",
        "points",
        "money_display",
        "offers_issued",
        "messages_sent",
        "created_at",
    )
    list_filter = ("campaign", "livemode")
    list_select_related = ("campaign", "contact")
    search_fields = ("contact__member_number", "cause")

    @display(description="Member number", ordering="contact__member_number")
    def member_number(self, obj):
        return obj.contact.member_number

    @display(description="Money")
    def money_display(self, obj):
        if not obj.currency:
            return str(obj.money) if obj.money else "-"
        return f"{format_minor(obj.money, obj.currency)} {obj.currency}"


class EventTypeFilter(admin.SimpleListFilter):
    """The types campaigns listen for and the system's own: a DISTINCT over the events table
    would read all of it on every page."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        listened = Campaign.objects.filter(trigger=Campaign.Trigger.EVENT).values_list("event_type", flat=True)
        types = sorted({*listened, *SYSTEM_EVENT_FOR_TRIGGER.values()} - {""})
        return [(event_type, event_type) for event_type in types]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = (
        "type",
        "contact_member_number",
        "source",
        "status_badge",
        "occurred_at",
        "awards_count",
        "attempts",
        "external_id",
    )
    list_filter = ("status", EventTypeFilter, "source", "livemode")
    list_select_related = ("contact",)
    search_fields = ("external_id", "contact__member_number", "type")
    actions = ["requeue_failed"]

    @display(description="Contact", ordering="contact__member_number")
    def contact_member_number(self, obj):
        return obj.contact.member_number

    @display(description="Status", label={"queued": "info", "processed": "success", "failed": "danger"})
    def status_badge(self, obj):
        return obj.status

    def has_requeue_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.change_event")

    @action(description="Re-process failed events", permissions=["requeue"])
    def requeue_failed(self, request, queryset):
        failed_ids = list(queryset.filter(status=Event.Status.FAILED).values_list("pk", flat=True))
        skipped = queryset.count() - len(failed_ids)
        requeued = sum(1 for event_id in failed_ids if event_requeue(event_id=event_id))
        note = f" ({skipped} not failed, left alone)" if skipped else ""
        self.message_user(request, f"{requeued} event(s) queued again{note}.", level=messages.SUCCESS)
