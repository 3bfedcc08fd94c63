"""Input shapes of the campaigns API, the translation of money at the edge (decimal strings in
the campaign's currency ↔ integer minor units) and the functions that write responses."""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.models import Campaign, CampaignOutcome, Event
from campaigns.services.definitions import CHANNELS
from core.api.serializers import ContactReferenceSerializer, StrictCharField, StrictSerializer
from core.exceptions import ValidationError
from core.money import check_currency, format_minor, to_minor
from offers.models import Offer

MONEY_HELP = 'A decimal string in the campaign\'s `currency`, e.g. "25.00".'
MAX_AUDIENCE_MEMBERS = 10_000


class MoneyField(StrictCharField):
    """A decimal string; turned into minor units with the campaign's currency by `money_to_minor`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", MONEY_HELP)
        kwargs.setdefault("max_length", 24)
        super().__init__(**kwargs)


@extend_schema_field(OpenApiTypes.STR)
class ChoiceStringField(serializers.ChoiceField):
    """A choice documented as a string naming its values. Two fields sharing one choice set
    (goal_period, limit_period), or a field name other components use for another set (`kind`),
    would make drf-spectacular name the enum ambiguously (a schema warning)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        values = ", ".join(f"`{value}`" for value in self.choices if value != "")
        self.help_text = f"{self.help_text} One of {values}." if self.help_text else f"One of {values}."


class CampaignRestrictionSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=["include", "exclude"], default="include")
    kind = ChoiceStringField(choices=["sku", "family", "brand"])
    value = StrictCharField(max_length=64)


class CampaignOutcomeSerializer(StrictSerializer):
    kind = ChoiceStringField(choices=CampaignOutcome.Kind.values)
    points = serializers.IntegerField(required=False, help_text="`points`: the points to award.")
    multiplier = serializers.DecimalField(
        required=False, max_digits=6, decimal_places=2, help_text="`points_multiplier`: 2 doubles the base points."
    )
    cashback_percent = serializers.DecimalField(
        required=False, max_digits=5, decimal_places=2, help_text="`cashback`: percent of the qualifying amount."
    )
    cashback_amount = MoneyField(required=False, allow_null=True, help_text=f"`cashback`: a fixed amount. {MONEY_HELP}")
    cashback_cap = MoneyField(
        required=False, allow_null=True, help_text=f"`cashback`: the largest amount. {MONEY_HELP}"
    )
    balance = serializers.ChoiceField(choices=CampaignOutcome.Balance.values, required=False)
    spend_condition = serializers.IntegerField(
        required=False, allow_null=True, help_text="`cashback` to the commerce balance: a spend condition id."
    )
    offer = serializers.UUIDField(required=False, allow_null=True, help_text="`issue_offer`: the offer's id.")
    message_variant = serializers.UUIDField(
        required=False, allow_null=True, help_text="`message`: the id of a message variant (GET /message-variants)."
    )


class CampaignInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    status = serializers.ChoiceField(
        choices=Campaign.Status.values,
        required=False,
        help_text="On create: draft (default), or active/scheduled to launch (the clock decides which). On "
        "update: draft → active|scheduled; scheduled → active|paused|ended|draft; active → paused|ended; "
        "paused → active|scheduled|ended; ended is final (else 409 CONFLICT).",
    )
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    ends_at = serializers.DateTimeField(required=False, allow_null=True)
    time_zone = StrictCharField(required=False, max_length=64, help_text="IANA, e.g. Europe/Oslo.")
    trigger = serializers.ChoiceField(choices=Campaign.Trigger.values, required=False)
    event_type = StrictCharField(
        required=False, allow_blank=True, max_length=64, help_text="Event triggers: the type it listens for."
    )
    to_tier = serializers.IntegerField(required=False, allow_null=True, help_text="Tier-changed triggers: a tier id.")
    audience = serializers.ChoiceField(choices=Campaign.Audience.values, required=False)
    audience_tiers = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="Tier ids.")
    audience_filters = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='At most 50: [{"attribute": "city", "operator": "eq", "value": "Oslo"}].',
    )
    currency = StrictCharField(
        required=False, allow_blank=True, max_length=3, help_text="Of every money field of the campaign (ISO 4217)."
    )
    min_spend = MoneyField(required=False, allow_null=True)
    min_quantity = serializers.DecimalField(required=False, max_digits=10, decimal_places=3)
    # Offers' order of the same channels: one choice set, documented as one enum.
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=[channel for channel in Offer.Channel.values if channel in CHANNELS]),
        required=False,
    )
    venues = serializers.ListField(child=serializers.UUIDField(), required=False)
    days_of_week = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=7), required=False)
    hour_from = serializers.TimeField(required=False, allow_null=True)
    hour_until = serializers.TimeField(required=False, allow_null=True)
    event_filters = serializers.ListField(child=serializers.DictField(), required=False)
    nth_purchase = serializers.IntegerField(required=False, allow_null=True)
    goal_metric = serializers.ChoiceField(choices=Campaign.GoalMetric.values, required=False, allow_blank=True)
    goal_target = serializers.JSONField(
        required=False,
        help_text=f"A whole number for visits and quantity goals; for spend goals a money amount. {MONEY_HELP}",
    )
    goal_period = ChoiceStringField(choices=Campaign.Period.values, required=False)
    goal_period_days = serializers.IntegerField(required=False)
    limit_per_contact = serializers.IntegerField(required=False, allow_null=True)
    limit_period = ChoiceStringField(choices=Campaign.Period.values, required=False)
    limit_period_days = serializers.IntegerField(required=False)
    budget_awards = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    budget_points = serializers.IntegerField(required=False, allow_null=True)
    budget_money = MoneyField(required=False, allow_null=True)
    priority = serializers.IntegerField(required=False)
    stops_lower_priority = serializers.BooleanField(required=False)
    restrictions = CampaignRestrictionSerializer(many=True, required=False, help_text="At most 50.")
    outcomes = CampaignOutcomeSerializer(many=True, required=False, help_text="At least one; at most 20.")


class CampaignListQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=Campaign.Status.values, required=False)
    trigger = serializers.ChoiceField(choices=Campaign.Trigger.values, required=False)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)


class SimulateInputSerializer(StrictSerializer):
    days = serializers.IntegerField(required=False, default=30, help_text="1 to 365 (default 30).")


class AudienceUploadInputSerializer(StrictSerializer):
    members = serializers.ListField(
        child=StrictCharField(max_length=254),
        help_text="Member numbers, emails or mobile phones, at most 10,000.",
    )
    replace = serializers.BooleanField(required=False, default=False, help_text="Replace the list (else add to it).")


class ProgressQuerySerializer(StrictSerializer):
    contact_id = serializers.UUIDField()


class EventInputSerializer(StrictSerializer):
    id = StrictCharField(
        required=False,
        max_length=100,
        help_text="Your id of the event: a repeat with the same id and body is answered as the first time; "
        "the same id with another body is 409 IDEMPOTENCY_MISMATCH. Generated when omitted.",
    )
    contact = ContactReferenceSerializer()
    type = StrictCharField(max_length=64, help_text="Lower-case letters, digits and underscores, e.g. app_opened.")
    occurred_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Default: now.")
    attributes = serializers.DictField(required=False, help_text="At most 100 attributes (16 kB).")


# --- money at the edge ---------------------------------------------------------------------------


def currency_for(data: dict, campaign: Campaign | None = None) -> str:
    """The currency the request's amounts are in: the one it sends (checked first), else the
    campaign's."""
    if "currency" in data:
        return check_currency(data["currency"]) if data["currency"] else ""
    return campaign.currency if campaign is not None else ""


def money_to_minor(value: Any, currency: str, field: str) -> int | None:
    """A decimal string → minor units of `currency`. Zero needs no currency; any other amount does."""
    if value is None:
        return None
    if not currency:
        try:
            is_zero = Decimal(value) == 0
        except (InvalidOperation, ValueError):
            is_zero = False
        if not is_zero:
            raise ValidationError.for_field(field, "A money amount needs the campaign's currency.", value=value)
        return 0
    minor = to_minor(value, currency, field=field)
    if minor < 0:
        raise ValidationError.for_field(field, "Amounts cannot be negative.", value=value)
    return minor


def goal_target_to_internal(value: Any, *, metric: str, currency: str) -> int:
    if metric == Campaign.GoalMetric.SPEND:
        if not isinstance(value, str):
            raise ValidationError.for_field("goal_target", f"A spend goal is a money amount. {MONEY_HELP}")
        return money_to_minor(value, currency, "goal_target")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError.for_field("goal_target", "A whole number of visits or items.")
    return value


def campaign_input_to_service(data: dict, campaign: Campaign | None = None) -> dict:
    """Validated input → the keyword arguments of campaign_create/campaign_update: money in
    minor units, the tier given as an id ('' clears it)."""
    currency = currency_for(data, campaign)
    if "currency" in data:
        data["currency"] = currency
    for name in ("min_spend", "budget_money"):
        if name in data:
            data[name] = money_to_minor(data[name], currency, name)
    if data.get("min_spend") is None and "min_spend" in data:
        data["min_spend"] = 0  # "no minimum": the column is not nullable
    if "goal_target" in data:
        metric = data.get("goal_metric", campaign.goal_metric if campaign is not None else "")
        data["goal_target"] = goal_target_to_internal(data["goal_target"], metric=metric, currency=currency)
    for index, outcome in enumerate(data.get("outcomes") or []):
        outcome = dict(outcome)
        for name in ("cashback_amount", "cashback_cap"):
            if name in outcome:
                outcome[name] = money_to_minor(outcome[name], currency, f"outcomes.{index}.{name}")
        for name in ("offer", "message_variant"):
            if outcome.get(name) is not None:
                outcome[name] = str(outcome[name])
        data["outcomes"][index] = outcome
    if "restrictions" in data:
        data["restrictions"] = [dict(restriction) for restriction in data["restrictions"]]
    if "venues" in data:
        data["venues"] = [str(venue_id) for venue_id in data["venues"]]
    if "to_tier" in data and data["to_tier"] is None:
        data["to_tier"] = ""  # the services read None as "unchanged"
    return data


def audience_csv(members: list[str]) -> str:
    """The members as CSV lines under a header (so the first member is never taken for one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["member"])
    for member in members:
        writer.writerow([member])
    return buffer.getvalue()


# --- responses ---------------------------------------------------------------------------------

# Times are written as strings, as DRF's fields write them, so a stored Idempotency-Key replay
# equals the first answer (see offers.api.serializers).
_datetime = serializers.DateTimeField().to_representation
_time = serializers.TimeField().to_representation


def _money(value: int | None, currency: str) -> str | None:
    if value is None:
        return None
    return format_minor(value, currency) if currency else str(value)


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def outcome_data(outcome: CampaignOutcome, currency: str) -> dict:
    """Every key always present; those that do not apply to the kind are null."""
    kind = outcome.kind
    is_cashback = kind == CampaignOutcome.Kind.CASHBACK
    return {
        "kind": kind,
        "points": outcome.points if kind == CampaignOutcome.Kind.POINTS else None,
        "multiplier": _decimal(outcome.multiplier) if kind == CampaignOutcome.Kind.POINTS_MULTIPLIER else None,
        "cashback_percent": _decimal(outcome.cashback_percent) if is_cashback else None,
        "cashback_amount": _money(outcome.cashback_amount, currency) if is_cashback else None,
        "cashback_cap": _money(outcome.cashback_cap, currency) if is_cashback else None,
        "balance": outcome.balance if is_cashback else None,
        "spend_condition": outcome.spend_condition_id if is_cashback else None,
        "offer": str(outcome.offer_id) if outcome.offer_id else None,
        "message_variant": str(outcome.message_variant_id) if outcome.message_variant_id else None,
    }


def goal_target_data(campaign: Campaign) -> int | str | None:
    if campaign.goal_metric == Campaign.GoalMetric.SPEND:
        return _money(campaign.goal_target, campaign.currency)
    return campaign.goal_target


def campaign_data(campaign: Campaign, totals: dict) -> dict:
    """A campaign as the API writes it (relations from the selector's prefetches); `totals` are
    what it has given (awards_count, points_awarded, money_awarded in minor units)."""
    currency = campaign.currency
    return {
        "id": str(campaign.pk),
        "livemode": campaign.livemode,
        "name": campaign.name,
        "description": campaign.description,
        "status": campaign.status,
        "starts_at": _datetime(campaign.starts_at),
        "ends_at": _datetime(campaign.ends_at),
        "time_zone": campaign.time_zone,
        "trigger": campaign.trigger,
        "event_type": campaign.event_type,
        "to_tier": campaign.to_tier_id,
        "audience": campaign.audience,
        "audience_tiers": sorted(tier.pk for tier in campaign.audience_tiers.all()),
        "audience_filters": campaign.audience_filters,
        "currency": currency or None,
        "min_spend": _money(campaign.min_spend, currency),
        "min_quantity": _decimal(campaign.min_quantity),
        "channels": campaign.channels,
        "venues": sorted(str(venue.pk) for venue in campaign.venues.all()),
        "days_of_week": campaign.days_of_week,
        "hour_from": _time(campaign.hour_from),
        "hour_until": _time(campaign.hour_until),
        "event_filters": campaign.event_filters,
        "nth_purchase": campaign.nth_purchase,
        "goal_metric": campaign.goal_metric,
        "goal_target": goal_target_data(campaign),
        "goal_period": campaign.goal_period,
        "goal_period_days": campaign.goal_period_days,
        "limit_per_contact": campaign.limit_per_contact,
        "limit_period": campaign.limit_period,
        "limit_period_days": campaign.limit_period_days,
        "budget_awards": campaign.budget_awards,
        "budget_points": campaign.budget_points,
        "budget_money": _money(campaign.budget_money, currency),
        "priority": campaign.priority,
        "stops_lower_priority": campaign.stops_lower_priority,
        "restrictions": [
            {"mode": restriction.mode, "kind": restriction.kind, "value": restriction.value}
            for restriction in sorted(campaign.restrictions.all(), key=lambda r: (r.mode, r.kind, r.value))
        ],
        "outcomes": [outcome_data(outcome, currency) for outcome in campaign.outcomes.all()],
        "counters": {
            "awards_count": totals["awards_count"],
            "points_awarded": totals["points_awarded"],
            "money_awarded": _money(totals["money_awarded"], currency),
        },
        "created_at": _datetime(campaign.created_at),
        "updated_at": _datetime(campaign.updated_at),
    }


def progress_data(progress: dict, campaign: Campaign) -> dict:
    """goal_progress's figures, with spend goals written as money in the campaign's currency."""
    is_spend = progress["metric"] == Campaign.GoalMetric.SPEND
    amount = (lambda value: _money(value, campaign.currency)) if is_spend else (lambda value: value)
    return {
        "campaign_id": progress["campaign_id"],
        "campaign_name": campaign.name,
        "metric": progress["metric"] or None,
        "progress": amount(progress["progress"]),
        "target": amount(progress["target"]),
        "currency": (campaign.currency or None) if is_spend else None,
        "period": progress["period"],
        "period_started_at": _datetime(progress["period_started_at"]),
        "last_award_at": _datetime(progress["last_award_at"]),
    }


def simulation_data(result: dict) -> dict:
    return {**result, "from": _datetime(result["from"]), "until": _datetime(result["until"])}


def event_accepted_data(event: Event) -> dict:
    """The answer to POST /events. Only fields that never change, and the status the event had
    when accepted, so a repeat with the same id gets the very same answer."""
    return {
        "id": event.external_id,
        "event_id": str(event.pk),
        "status": Event.Status.QUEUED,
        "type": event.type,
        "contact_id": str(event.contact_id),
        "occurred_at": _datetime(event.occurred_at),
        "livemode": event.livemode,
    }


def event_data(event: Event) -> dict:
    return {
        "id": event.external_id,
        "event_id": str(event.pk),
        "livemode": event.livemode,
        "source": event.source,
        "type": event.type,
        "contact_id": str(event.contact_id),
        "occurred_at": _datetime(event.occurred_at),
        "attributes": event.attributes,
        "status": event.status,
        "awards_count": event.awards_count,
        "failure_reason": event.failure_reason or None,
        "received_at": _datetime(event.received_at),
        "processed_at": _datetime(event.processed_at),
    }
