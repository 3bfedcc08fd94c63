"""Campaign definitions: one validation for the admin and the management API, create/update with
their lists (restrictions, outcomes, venues, audience tiers), status changes, the uploaded
audience list, and the beat task that moves statuses with the clock."""

from __future__ import annotations

import csv
import io
import zoneinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns.models import Campaign, CampaignAudienceMember, CampaignOutcome, CampaignRestriction
from campaigns.services.engine import FILTER_OPERATORS
from campaigns.services.events import EVENT_TYPE, RESERVED_TYPES
from catalogue.selectors import venues_in_mode
from catalogue.services import restrictions_check
from core.exceptions import Conflict, DomainError, LimitExceeded, ValidationError
from core.models import MessageVariant
from core.money import check_currency
from core.validators import is_valid_member_number, normalize_email, normalize_phone
from loyalty.models import Contact, SpendCondition, Tier
from offers.models import Offer

CAMPAIGN_FIELDS = (
    "name",
    "description",
    "starts_at",
    "ends_at",
    "time_zone",
    "trigger",
    "event_type",
    "audience",
    "audience_filters",
    "currency",
    "min_spend",
    "min_quantity",
    "channels",
    "days_of_week",
    "hour_from",
    "hour_until",
    "event_filters",
    "nth_purchase",
    "goal_metric",
    "goal_target",
    "goal_period",
    "goal_period_days",
    "limit_per_contact",
    "limit_period",
    "limit_period_days",
    "budget_awards",
    "budget_points",
    "budget_money",
    "priority",
    "stops_lower_priority",
)
CHANNELS = {"pos", "web", "mobile", "social"}
Status = Campaign.Status
_COUNTERS = {"awards_count", "points_awarded", "money_awarded"}
_EDITABLE_COLUMNS = [
    field.attname
    for field in Campaign._meta.concrete_fields
    if not field.primary_key and field.name not in _COUNTERS and field.name != "livemode"
]

# Which statuses a marketer may move a campaign to. `scheduled` and `active` are one intent
# ("launch"): the clock decides which one it is (see `_launched_status`).
TRANSITIONS: dict[str, set[str]] = {
    Status.DRAFT: {Status.ACTIVE, Status.SCHEDULED},
    Status.SCHEDULED: {Status.ACTIVE, Status.PAUSED, Status.ENDED, Status.DRAFT},
    Status.ACTIVE: {Status.PAUSED, Status.ENDED},
    Status.PAUSED: {Status.ACTIVE, Status.SCHEDULED, Status.ENDED},
    Status.ENDED: set(),
}


def check_filters(filters: Any, field: str) -> list[dict]:
    if filters in (None, ""):
        return []
    if not isinstance(filters, list) or len(filters) > 50:
        raise ValidationError.for_field(field, "A list of at most 50 {attribute, operator, value} filters.")
    for index, condition in enumerate(filters):
        if not isinstance(condition, dict) or not isinstance(condition.get("attribute"), str):
            raise ValidationError.for_field(f"{field}.{index}.attribute", "Each filter names an attribute.")
        operator = condition.get("operator", "eq")
        if operator not in FILTER_OPERATORS:
            raise ValidationError.for_field(
                f"{field}.{index}.operator", f"Use one of {', '.join(sorted(FILTER_OPERATORS))}."
            )
        if operator in ("in", "not_in") and not isinstance(condition.get("value"), list):
            raise ValidationError.for_field(f"{field}.{index}.value", "A list of values.")
        if operator not in ("exists", "not_exists") and "value" not in condition:
            raise ValidationError.for_field(f"{field}.{index}.value", "A value is required.")
    return filters


def check_campaign(campaign: Campaign) -> None:
    """Raise ValidationError naming the first field that makes no sense for the campaign."""
    if not (campaign.name or "").strip():
        raise ValidationError.for_field("name", "A campaign needs a name.")
    if campaign.starts_at and campaign.ends_at and campaign.ends_at <= campaign.starts_at:
        raise ValidationError.for_field("ends_at", "Must be after starts_at.")
    try:
        zoneinfo.ZoneInfo(campaign.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError.for_field("time_zone", "An IANA time zone, e.g. Europe/Oslo.") from None
    if campaign.trigger not in Campaign.Trigger.values:
        raise ValidationError.for_field("trigger", f"Use one of {', '.join(Campaign.Trigger.values)}.")
    is_purchase = campaign.trigger == Campaign.Trigger.PURCHASE
    if campaign.trigger == Campaign.Trigger.EVENT:
        if not EVENT_TYPE.match(campaign.event_type or "") or campaign.event_type in RESERVED_TYPES:
            raise ValidationError.for_field("event_type", "The event type it listens for, e.g. app_opened.")
    elif campaign.event_type:
        raise ValidationError.for_field("event_type", "Only event-triggered campaigns name an event type.")
    if campaign.to_tier_id and campaign.trigger != Campaign.Trigger.TIER_CHANGED:
        raise ValidationError.for_field("to_tier", "Only tier-changed campaigns name the tier.")
    if campaign.audience not in Campaign.Audience.values:
        raise ValidationError.for_field("audience", f"Use one of {', '.join(Campaign.Audience.values)}.")
    campaign.audience_filters = check_filters(campaign.audience_filters, "audience_filters")
    if campaign.audience == Campaign.Audience.ATTRIBUTES and not campaign.audience_filters:
        raise ValidationError.for_field("audience_filters", "An attribute audience needs at least one filter.")
    campaign.event_filters = check_filters(campaign.event_filters, "event_filters")
    if campaign.event_filters and is_purchase:
        raise ValidationError.for_field("event_filters", "Event filters apply to event-triggered campaigns.")
    if campaign.currency:
        campaign.currency = check_currency(campaign.currency)
    for name in ("min_spend", "goal_target", "budget_awards", "budget_points", "budget_money"):
        value = getattr(campaign, name)
        if value is not None and value < 0:
            raise ValidationError.for_field(name, "Cannot be negative.")
    if campaign.min_quantity is not None and campaign.min_quantity < 0:
        raise ValidationError.for_field("min_quantity", "Cannot be negative.")
    basket_conditions = {
        "min_spend": campaign.min_spend,
        "min_quantity": campaign.min_quantity,
        "channels": campaign.channels,
        "nth_purchase": campaign.nth_purchase,
    }
    if not is_purchase:
        for name, value in basket_conditions.items():
            if value:
                raise ValidationError.for_field(name, "Basket conditions apply to purchase-triggered campaigns.")
    if campaign.min_spend and not campaign.currency:
        raise ValidationError.for_field("currency", "A minimum spend needs a currency.")
    unknown = set(campaign.channels or []) - CHANNELS
    if unknown:
        raise ValidationError.for_field("channels", f"Unknown channel(s): {', '.join(sorted(unknown))}.")
    days = campaign.days_of_week or []
    if any(not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 7 for day in days):
        raise ValidationError.for_field("days_of_week", "ISO weekdays 1 (Monday) to 7 (Sunday).")
    if campaign.hour_from and campaign.hour_until and campaign.hour_until <= campaign.hour_from:
        raise ValidationError.for_field("hour_until", "Must be after hour_from.")
    if campaign.nth_purchase is not None and campaign.nth_purchase < 1:
        raise ValidationError.for_field("nth_purchase", "1 is the first purchase.")
    if campaign.goal_metric:
        if campaign.goal_metric not in Campaign.GoalMetric.values:
            raise ValidationError.for_field("goal_metric", "Use spend, visits or quantity.")
        if not campaign.goal_target or campaign.goal_target <= 0:
            raise ValidationError.for_field("goal_target", "A goal needs a positive target.")
        if campaign.goal_metric in ("spend", "quantity") and not is_purchase:
            raise ValidationError.for_field("goal_metric", "Spend and quantity goals count purchases.")
        if campaign.goal_metric == "spend" and not campaign.currency:
            raise ValidationError.for_field("currency", "A spend goal needs a currency.")
    for name in ("goal_period", "limit_period"):
        if getattr(campaign, name) not in Campaign.Period.values:
            raise ValidationError.for_field(name, f"Use one of {', '.join(Campaign.Period.values)}.")
    for name in ("goal_period_days", "limit_period_days"):
        if not getattr(campaign, name) or getattr(campaign, name) < 1:
            raise ValidationError.for_field(name, "At least one day.")
    if campaign.limit_per_contact is not None and campaign.limit_per_contact < 1:
        raise ValidationError.for_field("limit_per_contact", "At least 1 (leave empty for no limit).")


def check_restrictions(restrictions: list[dict[str, str]], *, trigger: str) -> list[tuple[str, str, str]]:
    if restrictions and trigger != Campaign.Trigger.PURCHASE:
        raise ValidationError.for_field("restrictions", "Catalogue restrictions apply to purchase-triggered campaigns.")
    return restrictions_check(restrictions, owner="campaign")


def _decimal(value: Any, field: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError.for_field(field, "A number.") from None


def check_outcomes(outcomes: list[dict[str, Any]], *, campaign: Campaign) -> list[CampaignOutcome]:
    """Outcome rows (unsaved) from plain dicts; raises ValidationError naming `outcomes.N.field`."""
    if not outcomes:
        raise ValidationError.for_field("outcomes", "A campaign gives at least one outcome.")
    if len(outcomes) > 20:
        raise LimitExceeded(
            "At most 20 outcomes per campaign.", parameters=[LimitExceeded.parameter("outcomes", limit=20)]
        )
    built, kinds = [], set()
    for index, data in enumerate(outcomes):
        prefix = f"outcomes.{index}"
        kind = data.get("kind")
        if kind not in CampaignOutcome.Kind.values:
            raise ValidationError.for_field(f"{prefix}.kind", f"Use one of {', '.join(CampaignOutcome.Kind.values)}.")
        if kind in kinds and kind in ("points", "points_multiplier", "cashback"):
            raise ValidationError.for_field(f"{prefix}.kind", "One outcome of this kind per campaign.")
        kinds.add(kind)
        outcome = CampaignOutcome(campaign=campaign, kind=kind)
        if kind == "points":
            points = data.get("points")
            if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
                raise ValidationError.for_field(f"{prefix}.points", "A positive whole number of points.")
            outcome.points = points
        elif kind == "points_multiplier":
            if campaign.trigger != Campaign.Trigger.PURCHASE:
                raise ValidationError.for_field(f"{prefix}.kind", "Only a purchase has points to multiply.")
            outcome.multiplier = _decimal(data.get("multiplier"), f"{prefix}.multiplier")
            if not Decimal(1) < outcome.multiplier <= 100:
                raise ValidationError.for_field(f"{prefix}.multiplier", "A multiplier above 1 (at most 100).")
        elif kind == "cashback":
            outcome.cashback_percent = _decimal(data.get("cashback_percent") or 0, f"{prefix}.cashback_percent")
            outcome.cashback_amount = data.get("cashback_amount") or 0
            outcome.cashback_cap = data.get("cashback_cap")
            if not 0 <= outcome.cashback_percent <= 100:
                raise ValidationError.for_field(f"{prefix}.cashback_percent", "A percentage between 0 and 100.")
            if outcome.cashback_percent and campaign.trigger != Campaign.Trigger.PURCHASE:
                raise ValidationError.for_field(f"{prefix}.cashback_percent", "A percentage needs a purchase.")
            if outcome.cashback_amount < 0:
                raise ValidationError.for_field(f"{prefix}.cashback_amount", "Cannot be negative.")
            if outcome.cashback_cap is not None and outcome.cashback_cap < 0:
                raise ValidationError.for_field(f"{prefix}.cashback_cap", "Cannot be negative.")
            if not outcome.cashback_percent and not outcome.cashback_amount:
                raise ValidationError.for_field(f"{prefix}.cashback_amount", "Give a percentage or an amount.")
            if not campaign.currency:
                raise ValidationError.for_field("currency", "Cashback needs the campaign's currency.")
            outcome.balance = data.get("balance") or CampaignOutcome.Balance.OPEN
            if outcome.balance not in CampaignOutcome.Balance.values:
                raise ValidationError.for_field(f"{prefix}.balance", "Use open or commerce.")
            condition_id = data.get("spend_condition")
            if condition_id:
                if outcome.balance != CampaignOutcome.Balance.COMMERCE:
                    raise ValidationError.for_field(f"{prefix}.spend_condition", "Only commerce money has conditions.")
                condition = SpendCondition.objects.filter(livemode=campaign.livemode, pk=condition_id).first()
                if condition is None:
                    raise ValidationError.for_field(f"{prefix}.spend_condition", "No such spend condition.")
                outcome.spend_condition = condition
        elif kind == "issue_offer":
            offer = Offer.objects.filter(livemode=campaign.livemode, pk=data.get("offer")).first()
            if offer is None:
                raise ValidationError.for_field(f"{prefix}.offer", "No such offer in this mode.")
            if offer.status == Offer.Status.ARCHIVED:
                raise ValidationError.for_field(f"{prefix}.offer", "The offer is archived.")
            outcome.offer = offer
        elif kind == "message":
            variant = MessageVariant.objects.filter(livemode=campaign.livemode, pk=data.get("message_variant")).first()
            if variant is None:
                raise ValidationError.for_field(f"{prefix}.message_variant", "No such message variant.")
            outcome.message_variant = variant
        built.append(outcome)
    return built


def _tiers(livemode: bool, tier_ids: list) -> list[Tier]:
    tiers = list(Tier.objects.filter(livemode=livemode, pk__in=tier_ids))
    if len(tiers) != len(set(tier_ids)):
        raise ValidationError.for_field("audience_tiers", "Unknown tier(s) in this mode.")
    return tiers


def _launched_status(campaign: Campaign, now) -> str:
    if campaign.ends_at and campaign.ends_at <= now:
        return Status.ENDED
    if campaign.starts_at and campaign.starts_at > now:
        return Status.SCHEDULED
    return Status.ACTIVE


def _save(
    campaign: Campaign,
    *,
    restrictions: list[dict] | None,
    outcomes: list[dict] | None,
    venue_ids: list | None,
    tier_ids: list | None,
    to_tier_id: Any,
) -> Campaign:
    if to_tier_id is not None:
        tier = Tier.objects.filter(livemode=campaign.livemode, pk=to_tier_id).first() if to_tier_id else None
        if to_tier_id and tier is None:
            raise ValidationError.for_field("to_tier", "No such tier in this mode.")
        campaign.to_tier = tier
    check_campaign(campaign)
    triples = (
        check_restrictions(restrictions, trigger=campaign.trigger)
        if restrictions is not None
        else (check_restrictions(_current_restrictions(campaign), trigger=campaign.trigger) and None)
    )
    built = check_outcomes(outcomes, campaign=campaign) if outcomes is not None else None
    if built is None and campaign.pk and campaign.outcomes.exists():
        check_outcomes(_current_outcomes(campaign), campaign=campaign)  # a changed trigger must still fit
    venues = venues_in_mode(livemode=campaign.livemode, venue_ids=venue_ids) if venue_ids is not None else None
    if venues and campaign.trigger != Campaign.Trigger.PURCHASE:
        raise ValidationError.for_field("venues", "Venues apply to purchase-triggered campaigns.")
    tiers = _tiers(campaign.livemode, tier_ids) if tier_ids is not None else None
    if campaign.audience == Campaign.Audience.TIERS and not (
        tiers if tiers is not None else (campaign.pk and campaign.audience_tiers.exists())
    ):
        raise ValidationError.for_field("audience_tiers", "A tier audience needs at least one tier.")
    campaign.updated_at = timezone.now()
    if campaign._state.adding:
        campaign.save()
    else:
        # Never write the counters back: budget updates move them with conditional UPDATEs.
        campaign.save(update_fields=[name for name in _EDITABLE_COLUMNS])
    if triples is not None:
        campaign.restrictions.all().delete()
        CampaignRestriction.objects.bulk_create(
            CampaignRestriction(campaign=campaign, mode=mode, kind=kind, value=value) for mode, kind, value in triples
        )
    if built is not None:
        campaign.outcomes.all().delete()
        for outcome in built:
            outcome.campaign = campaign
        CampaignOutcome.objects.bulk_create(built)
    if venues is not None:
        campaign.venues.set(venues)
    if tiers is not None:
        campaign.audience_tiers.set(tiers)
    return campaign


def _current_restrictions(campaign: Campaign) -> list[dict]:
    if not campaign.pk:
        return []
    return list(campaign.restrictions.values("mode", "kind", "value"))


def _current_outcomes(campaign: Campaign) -> list[dict]:
    return [
        {
            "kind": outcome.kind,
            "points": outcome.points,
            "multiplier": outcome.multiplier,
            "cashback_percent": outcome.cashback_percent,
            "cashback_amount": outcome.cashback_amount,
            "cashback_cap": outcome.cashback_cap,
            "balance": outcome.balance,
            "spend_condition": outcome.spend_condition_id,
            "offer": outcome.offer_id,
            "message_variant": outcome.message_variant_id,
        }
        for outcome in campaign.outcomes.all()
    ]


@transaction.atomic
def campaign_create(
    *,
    livemode: bool,
    restrictions: list[dict] | None = None,
    outcomes: list[dict] | None = None,
    venues: list | None = None,
    audience_tiers: list | None = None,
    to_tier: Any = None,
    status: str = Status.DRAFT,
    **fields: Any,
) -> Campaign:
    """Create a campaign (draft unless `status` launches it). Raises ValidationError,
    LimitExceeded (more than 50 restrictions)."""
    campaign = Campaign(livemode=livemode, **{key: value for key, value in fields.items() if key in CAMPAIGN_FIELDS})
    if status not in (Status.DRAFT, Status.ACTIVE, Status.SCHEDULED):
        raise ValidationError.for_field("status", "A new campaign is a draft, or launched (active/scheduled).")
    campaign.status = Status.DRAFT if status == Status.DRAFT else _launched_status(campaign, timezone.now())
    return _save(
        campaign,
        restrictions=restrictions or [],
        outcomes=outcomes or [],
        venue_ids=venues or [],
        tier_ids=audience_tiers or [],
        to_tier_id=to_tier or "",
    )


@transaction.atomic
def campaign_update(
    *,
    campaign: Campaign,
    restrictions: list[dict] | None = None,
    outcomes: list[dict] | None = None,
    venues: list | None = None,
    audience_tiers: list | None = None,
    to_tier: Any = None,
    status: str | None = None,
    **fields: Any,
) -> Campaign:
    """Change fields (lists, when given, replace the current ones) and, with `status`, move the
    campaign along `TRANSITIONS` (Conflict when not allowed). Raises ValidationError."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    lists = (restrictions, outcomes, venues, audience_tiers, to_tier)
    if status in (Status.PAUSED, Status.ENDED, Status.DRAFT) and not fields and all(x is None for x in lists):
        # Stopping a campaign must always be possible, even when its configuration no longer
        # validates (an outcome's offer archived since): only the status and window change.
        _status_move(campaign, status)
        campaign.save(update_fields=["status", "starts_at", "ends_at", "updated_at"])
        return campaign
    for key, value in fields.items():
        if key in CAMPAIGN_FIELDS:
            setattr(campaign, key, value)
    _status_move(campaign, status)
    return _save(
        campaign,
        restrictions=restrictions,
        outcomes=outcomes,
        venue_ids=venues,
        tier_ids=audience_tiers,
        to_tier_id=to_tier,
    )


def _status_move(campaign: Campaign, status: str | None) -> None:
    """Move the (locked) campaign to `status` along TRANSITIONS; Conflict when not allowed."""
    campaign.updated_at = timezone.now()
    if status is not None and status != campaign.status:
        if status not in TRANSITIONS.get(campaign.status, set()):
            raise Conflict(
                f"A {campaign.status} campaign cannot become {status}.",
                parameters=[Conflict.parameter("status", value=status, current=campaign.status)],
            )
        now = timezone.now()
        if status in (Status.ACTIVE, Status.SCHEDULED):
            status = _launched_status(campaign, now)
        elif status == Status.ENDED and (campaign.ends_at is None or campaign.ends_at > now):
            campaign.ends_at = now  # ended by hand: causes after now no longer count, even late ones
            if campaign.starts_at and campaign.starts_at >= now:
                campaign.starts_at = None
        campaign.status = status


def campaign_statuses_refresh(*, now=None) -> int:
    """Scheduled campaigns whose start has come become active; launched campaigns whose end has
    passed become ended. Guarded updates; safe to run any time."""
    now = now or timezone.now()
    started = Campaign.objects.filter(status=Status.SCHEDULED, starts_at__lte=now).filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now)
    )
    changed = started.update(status=Status.ACTIVE, updated_at=now)
    changed += Campaign.objects.filter(
        status__in=[Status.SCHEDULED, Status.ACTIVE, Status.PAUSED], ends_at__lte=now
    ).update(status=Status.ENDED, updated_at=now)
    return changed


def campaign_audience_upload(*, campaign: Campaign, content: str, replace: bool = False) -> dict[str, Any]:
    """Load a list audience from CSV text: one member number, email or mobile phone per line (the
    first column; a first line without digits or "@" is taken for a header). Resolved in three
    queries whatever the length. Returns counts and the lines that matched nobody."""
    if campaign.audience != Campaign.Audience.LIST:
        raise ValidationError.for_field("audience", "Only a list audience takes an uploaded list.")
    wanted: dict[str, tuple[str, str]] = {}  # line → (kind, normalised key)
    lines: list[tuple[int, str]] = []
    for line_number, row in enumerate(csv.reader(io.StringIO(content)), start=1):
        value = (row[0] if row else "").strip()
        if not value or (line_number == 1 and not any(ch.isdigit() for ch in value) and "@" not in value):
            continue
        lines.append((line_number, value))
    by_member, by_email, by_phone = set(), set(), set()
    for line_number, value in lines:
        compact = value.replace(" ", "").replace("-", "")
        try:
            if "@" in value:
                key = ("email", normalize_email(value).lower())
                by_email.add(key[1])
            elif compact.isdigit() and is_valid_member_number(compact):
                key = ("member_number", compact)
                by_member.add(compact)
            else:
                key = ("mobile_phone", normalize_phone(value))
                by_phone.add(key[1])
        except DomainError:
            continue
        wanted[f"{line_number}"] = key
    active = Contact.objects.filter(livemode=campaign.livemode, status=Contact.Status.ACTIVE)
    found: dict[tuple[str, str], Any] = {}
    if by_member:
        for pk, number in active.filter(member_number__in=by_member).values_list("pk", "member_number"):
            found[("member_number", number)] = pk
    if by_email:
        for pk, email in (
            active.alias(email_lower=Lower("email")).filter(email_lower__in=by_email).values_list("pk", "email")
        ):
            found[("email", email.lower())] = pk
    if by_phone:
        for pk, phone in active.filter(mobile_phone__in=by_phone).values_list("pk", "mobile_phone"):
            found[("mobile_phone", phone)] = pk
    contact_ids, unmatched = set(), []
    for line_number, value in lines:
        key = wanted.get(f"{line_number}")
        contact_id = found.get(key) if key else None
        if contact_id is None:
            unmatched.append({"line": line_number, "value": value})
        else:
            contact_ids.add(contact_id)
    with transaction.atomic():
        if replace:
            CampaignAudienceMember.objects.filter(campaign=campaign).delete()
        CampaignAudienceMember.objects.bulk_create(
            [CampaignAudienceMember(campaign=campaign, contact_id=contact_id) for contact_id in contact_ids],
            ignore_conflicts=True,
            batch_size=1000,
        )
        Campaign.objects.filter(pk=campaign.pk).update(updated_at=timezone.now())
    return {
        "matched": len(contact_ids),
        "unmatched": unmatched[:100],
        "unmatched_count": len(unmatched),
        "members": CampaignAudienceMember.objects.filter(campaign=campaign).count(),
    }
