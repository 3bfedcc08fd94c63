"""Simulation before launch: what a campaign would have done over the last N days.

Replays the processed purchases (with their lines), events, registrations, tier changes or
birthdays of the period through the same pure engine live processing uses, in business-time
order, keeping goals, per-contact limits and the budget in memory. It only reads: nothing is
written, nothing is sent. The campaign is simulated on its own (other campaigns' "stop lower
priority" do not apply) and from a clean slate (its past awards are not counted).
"""

from __future__ import annotations

import bisect
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone

from campaigns.models import Campaign, CampaignAudienceMember, Event
from campaigns.selectors import campaign_specs
from campaigns.services.engine import CampaignSpec, CauseFacts, evaluate, goal_reached, period_start
from catalogue.models import Product
from core.exceptions import ValidationError
from core.money import format_minor
from loyalty.models import Contact, TierHistory
from offers.services.engine import BasketContext
from transactions.models import Transaction
from transactions.selectors import item_lines

MAX_DAYS = 365
BATCH = 2000


@dataclass
class _Day:
    awards: int = 0
    contacts: set = field(default_factory=set)
    points: int = 0
    money: int = 0
    offers: int = 0
    messages: int = 0


@dataclass
class _State:
    """What live processing keeps in the database, kept in memory."""

    contributions: dict = field(default_factory=lambda: defaultdict(list))  # contact → [(at, amount)]
    awards: dict = field(default_factory=lambda: defaultdict(list))  # contact → [at]
    awards_total: int = 0
    points_total: int = 0
    money_total: int = 0


def _goal_met(spec: CampaignSpec, state: _State, contact_id: str, at: datetime, contribution: int) -> bool:
    if not spec.goal_metric:
        return True
    if contribution > 0:
        state.contributions[contact_id].append((at, contribution))
    start = period_start(spec.goal_period, spec.goal_period_days, at, spec.time_zone, spec.starts_at)
    previous = [moment for moment in state.awards[contact_id] if moment <= at]
    last_award = max(previous) if previous else None
    progress = sum(
        amount
        for moment, amount in state.contributions[contact_id]
        if moment <= at and (start is None or moment >= start) and (last_award is None or moment > last_award)
    )
    return goal_reached(spec, progress)


def _within_limits(spec: CampaignSpec, state: _State, contact_id: str, at: datetime, points: int, money: int) -> bool:
    if spec.limit_per_contact is not None:
        start = period_start(spec.limit_period, spec.limit_period_days, at, spec.time_zone, spec.starts_at)
        count = sum(1 for moment in state.awards[contact_id] if start is None or moment >= start)
        if count >= spec.limit_per_contact:
            return False
    if spec.budget_awards is not None and state.awards_total + 1 > spec.budget_awards:
        return False
    if spec.budget_points is not None and state.points_total + points > spec.budget_points:
        return False
    return not (spec.budget_money is not None and state.money_total + money > spec.budget_money)


def _learn_catalogue(livemode: bool, skus: set[str], catalogue: dict) -> None:
    """Family and brand of the SKUs not seen yet (read-only; the cache makes it one query per
    purchase at most, and none once the period's SKUs are known)."""
    missing = skus - catalogue.keys()
    if not missing:
        return
    for sku, family, brand in Product.objects.filter(livemode=livemode, sku__in=missing).values_list(
        "sku", "family__code", "brand__code"
    ):
        catalogue[sku] = (family, brand)
    for sku in missing - catalogue.keys():
        catalogue[sku] = (None, None)


def _on_list(campaign: Campaign, contact_id: str, audience_list: set) -> frozenset[str]:
    return frozenset([str(campaign.pk)]) if contact_id in audience_list else frozenset()


def _purchase_causes(campaign: Campaign, since: datetime, until: datetime, tiers_at, audience_list: set):
    purchases = (
        Transaction.objects.filter(
            livemode=campaign.livemode,
            status=Transaction.Status.PROCESSED,
            occurred_at__gte=since,
            occurred_at__lt=until,
        )
        .exclude(contact=None)
        .select_related("venue", "contact")
        .prefetch_related("items")
        .order_by("occurred_at", "id")
    )
    purchase_numbers: dict[str, int] = {}
    if campaign.nth_purchase:
        # How many processed purchases each contact had before the period (one grouped query).
        from django.db.models import Count

        for contact_id, count in (
            Transaction.objects.filter(
                livemode=campaign.livemode, status=Transaction.Status.PROCESSED, occurred_at__lt=since
            )
            .exclude(contact=None)
            .values_list("contact_id")
            .annotate(count=Count("id"))
        ):
            purchase_numbers[str(contact_id)] = count
    catalogue: dict[str, tuple[str | None, str | None]] = {}
    for txn in purchases.iterator(chunk_size=BATCH):
        contact_id = str(txn.contact_id)
        purchase_numbers[contact_id] = purchase_numbers.get(contact_id, 0) + 1
        items = list(txn.items.all())
        _learn_catalogue(campaign.livemode, {item.sku for item in items}, catalogue)
        # As processing did: what the catalogue says where the till said nothing.
        lines = [
            replace(
                line,
                family=line.family or catalogue[line.sku][0],
                brand=line.brand or catalogue[line.sku][1],
            )
            for line in item_lines(items)
        ]
        yield (
            txn.occurred_at,
            "transaction",
            CauseFacts(
                kind="purchase",
                key=f"txn:{txn.pk}",
                occurred_at=txn.occurred_at,
                contact_id=contact_id,
                tier_id=tiers_at(contact_id, txn.occurred_at),
                contact_attributes=txn.contact.attributes or {},
                audience_list_campaign_ids=frozenset([str(campaign.pk)])
                if contact_id in audience_list
                else frozenset(),
                basket=BasketContext(
                    lines=lines,
                    currency=txn.currency,
                    at=txn.occurred_at,
                    channel=txn.channel or None,
                    venue_id=str(txn.venue_id) if txn.venue_id else None,
                    venue_time_zone=txn.venue.time_zone if txn.venue_id else "UTC",
                ),
                base_points=txn.points_earned,
                purchase_number=purchase_numbers[contact_id],
            ),
        )


def _event_facts(
    campaign: Campaign, key: str, contact: Contact, at: datetime, event_type: str, attributes, tiers_at, audience_list
):
    contact_id = str(contact.pk)
    return CauseFacts(
        kind="event",
        key=key,
        occurred_at=at,
        contact_id=contact_id,
        tier_id=tiers_at(contact_id, at),
        contact_attributes=contact.attributes or {},
        audience_list_campaign_ids=_on_list(campaign, contact_id, audience_list),
        event_type=event_type,
        event_attributes=attributes or {},
    )


def _event_causes(campaign: Campaign, since: datetime, until: datetime, tiers_at, audience_list: set):
    livemode, trigger = campaign.livemode, campaign.trigger
    if trigger == Campaign.Trigger.EVENT:
        events = (
            Event.objects.filter(
                livemode=livemode, type=campaign.event_type, occurred_at__gte=since, occurred_at__lt=until
            )
            .exclude(status=Event.Status.FAILED)
            .select_related("contact")
            .order_by("occurred_at", "id")
        )
        for event in events.iterator(chunk_size=BATCH):
            yield (
                event.occurred_at,
                "event",
                _event_facts(
                    campaign,
                    f"event:{event.pk}",
                    event.contact,
                    event.occurred_at,
                    event.type,
                    event.attributes,
                    tiers_at,
                    audience_list,
                ),
            )
    elif trigger == Campaign.Trigger.CONTACT_REGISTERED:
        contacts = Contact.objects.filter(livemode=livemode, created_at__gte=since, created_at__lt=until).order_by(
            "created_at"
        )
        for contact in contacts.iterator(chunk_size=BATCH):
            yield (
                contact.created_at,
                "event",
                _event_facts(
                    campaign,
                    f"registered:{contact.pk}",
                    contact,
                    contact.created_at,
                    "contact.registered",
                    {},
                    tiers_at,
                    audience_list,
                ),
            )
    elif trigger == Campaign.Trigger.TIER_CHANGED:
        changes = (
            TierHistory.objects.filter(livemode=livemode, created_at__gte=since, created_at__lt=until)
            .select_related("contact")
            .order_by("created_at", "id")
        )
        for change in changes.iterator(chunk_size=BATCH):
            attributes = {"from_tier_id": change.from_tier_id, "to_tier_id": change.to_tier_id}
            yield (
                change.created_at,
                "event",
                _event_facts(
                    campaign,
                    f"tier:{change.pk}",
                    change.contact,
                    change.created_at,
                    "tier.changed",
                    attributes,
                    tiers_at,
                    audience_list,
                ),
            )
    elif trigger == Campaign.Trigger.BIRTHDAY:
        zone = zoneinfo.ZoneInfo(campaign.time_zone or "UTC")
        first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
        contacts = Contact.objects.filter(livemode=livemode, status=Contact.Status.ACTIVE).exclude(birth_date=None)
        found = []
        for contact in contacts.iterator(chunk_size=BATCH):
            day = _birthday_between(contact.birth_date, first, last)
            if day is not None:
                at = datetime.combine(day, datetime.min.time(), tzinfo=zone).replace(hour=9)
                found.append((at, contact))
        for at, contact in sorted(found, key=lambda pair: pair[0]):
            key = f"birthday:{contact.pk}:{at.year}"
            yield at, "event", _event_facts(campaign, key, contact, at, "birthday", {}, tiers_at, audience_list)


def _birthday_between(birth_date: date, first: date, last: date) -> date | None:
    for year in range(first.year, last.year + 1):
        try:
            day = birth_date.replace(year=year)
        except ValueError:
            day = date(year, 2, 28)  # 29 February in a common year
        if first <= day <= last:
            return day
    return None


def _tiers_at(livemode: bool, until: datetime):
    """A function (contact id, moment) → tier id at that moment, from one read of tier history."""
    history: dict[str, list] = defaultdict(list)
    for contact_id, created_at, to_tier_id in (
        TierHistory.objects.filter(livemode=livemode, created_at__lt=until)
        .order_by("created_at", "id")
        .values_list("contact_id", "created_at", "to_tier_id")
    ):
        history[str(contact_id)].append((created_at, to_tier_id))

    def tier_at(contact_id: str, moment: datetime):
        changes = history.get(contact_id)
        if not changes:
            return None
        position = bisect.bisect_right([change[0] for change in changes], moment)
        return changes[position - 1][1] if position else None

    return tier_at


def campaign_simulate(*, campaign: Campaign, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """Reach, cost and a per-day breakdown of what the campaign would have given over the last
    `days` days. Writes nothing. Raises ValidationError for a period out of range."""
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise ValidationError.for_field("days", f"Between 1 and {MAX_DAYS} days.")
    now = now or timezone.now()
    since = now - timedelta(days=days)
    spec = campaign_specs([campaign])[campaign.pk]
    # The campaign's own window does not hide the past: a draft is simulated as if it had run.
    spec = CampaignSpec(**{**spec.__dict__, "starts_at": None, "ends_at": None})
    audience_list = (
        {
            str(pk)
            for pk in CampaignAudienceMember.objects.filter(campaign=campaign).values_list("contact_id", flat=True)
        }
        if campaign.audience == Campaign.Audience.LIST
        else set()
    )
    tiers_at = _tiers_at(campaign.livemode, now)
    if campaign.trigger == Campaign.Trigger.PURCHASE:
        causes = _purchase_causes(campaign, since, now, tiers_at, audience_list)
    else:
        causes = _event_causes(campaign, since, now, tiers_at, audience_list)
    zone = zoneinfo.ZoneInfo(campaign.time_zone or "UTC")
    state, per_day = _State(), defaultdict(_Day)
    evaluated = {"transactions": 0, "events": 0}
    reached_contacts: set[str] = set()
    reached_causes = {"transactions": 0, "events": 0}
    offers = messages = 0
    not_awarded: dict[str, int] = defaultdict(int)  # why causes gave nothing: the marketer's first question
    for at, cause_kind, facts in causes:
        evaluated[f"{cause_kind}s"] += 1
        decision = evaluate(spec, facts)
        if not decision.fires:
            for reason in decision.reasons:
                not_awarded[reason] += 1
            continue
        contact_id = facts.contact_id
        if not _goal_met(spec, state, contact_id, at, decision.contribution):
            not_awarded["goal_not_reached_yet"] += 1
            continue
        if not _within_limits(spec, state, contact_id, at, decision.points, decision.money):
            not_awarded["limit_or_budget_reached"] += 1
            continue
        state.awards[contact_id].append(at)
        state.awards_total += 1
        state.points_total += decision.points
        state.money_total += decision.money
        offers += len(decision.offer_ids)
        messages += len(decision.messages)
        reached_contacts.add(contact_id)
        reached_causes[f"{cause_kind}s"] += 1
        day = per_day[at.astimezone(zone).date()]
        day.awards += 1
        day.contacts.add(contact_id)
        day.points += decision.points
        day.money += decision.money
        day.offers += len(decision.offer_ids)
        day.messages += len(decision.messages)
    currency = campaign.currency
    first_day = since.astimezone(zone).date()
    last_day = now.astimezone(zone).date()
    days_out = []
    day = first_day
    while day <= last_day:
        figures = per_day.get(day, _Day())
        days_out.append(
            {
                "date": day.isoformat(),
                "awards": figures.awards,
                "contacts": len(figures.contacts),
                "points": figures.points,
                "money": format_minor(figures.money, currency) if currency else None,
                "offers": figures.offers,
                "messages": figures.messages,
            }
        )
        day += timedelta(days=1)
    return {
        "campaign_id": str(campaign.pk),
        "days": days,
        "from": since,
        "until": now,
        "evaluated": evaluated,
        "reach": {"contacts": len(reached_contacts), **reached_causes},
        "cost": {
            "awards": state.awards_total,
            "points": state.points_total,
            "money": format_minor(state.money_total, currency) if currency else None,
            "currency": currency or None,
            "offers": offers,
            "messages": messages,
        },
        "not_awarded": dict(sorted(not_awarded.items(), key=lambda item: -item[1])),
        "per_day": days_out,
    }
