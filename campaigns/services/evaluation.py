"""Live evaluation: campaigns fire for a cause and post their outcomes.

Called inside the database transaction that processes the cause (a purchase, by the hook the
transactions app calls; an event, by `event_process`), so the outcomes commit with it or not at
all. Each firing is a `CampaignAward` unique per (campaign, cause, contact) and every posting
has a ledger idempotency key derived from it: re-processing never gives anything twice.

Goal progress and per-contact limits are read and written under the (campaign, contact)
`CampaignParticipation` row lock; budgets move by conditional UPDATE. Lock order, the same on
every path so parallel workers cannot deadlock: the contact's points account, then the
participation rows in campaign priority order, then the campaign row (budget), then money
accounts.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, CampaignAward, CampaignParticipation, GoalContribution
from campaigns.selectors import goal_progress_at
from campaigns.services.engine import CampaignSpec, CauseFacts, Decision, evaluate, goal_reached, ordered, period_start
from core.exceptions import DomainError
from core.messages import message_render
from core.services import outbox_emit
from loyalty.models import Account, Contact, SpendCondition
from loyalty.services.ledger import Cause, account_get_or_create
from loyalty.services.wallets import money_credit, points_earn
from offers.models import Offer
from offers.services.issued import issued_offer_issue

logger = logging.getLogger(__name__)
ALREADY_AWARDED: Any = object()  # `_fire`'s answer for a retry of a cause that already fired


@dataclass
class Posting:
    """Where a cause's ledger entries belong: a purchase's awards carry the purchase's source so
    a void of the purchase reverses them with its own entries."""

    source_type: str
    source_id: str
    facts_for_messages: dict[str, Any] = field(default_factory=dict)


def campaigns_apply(*, contact: Contact, facts: CauseFacts, specs: list[CampaignSpec], posting: Posting) -> list:
    """Fire every campaign in `specs` that the cause meets (priority order, stopping after a
    campaign that stops lower ones), within goals, limits and budgets, and post the outcomes.
    Call inside the transaction processing the cause. Safe to call again for the same cause."""
    awards = []
    points_account_locked = False
    for spec in ordered(specs):
        decision = evaluate(spec, facts)
        if not decision.fires:
            continue
        if not points_account_locked:
            _lock_points_account(contact)
            points_account_locked = True
        award = _fire(spec=spec, decision=decision, contact=contact, facts=facts, posting=posting)
        if award is ALREADY_AWARDED:
            if spec.stops_lower_priority:
                break  # as the first time: the campaigns below were stopped then too
        elif award is not None:
            awards.append(award)
            if spec.stops_lower_priority:
                break
    return awards


def _lock_points_account(contact: Contact) -> None:
    locked = Account.objects.select_for_update().filter(contact_id=contact.pk, kind=Account.Kind.POINTS, currency="")
    if not locked.values_list("pk", flat=True):
        account = account_get_or_create(contact=contact, kind=Account.Kind.POINTS)
        Account.objects.select_for_update().filter(pk=account.pk).values_list("pk", flat=True).get()


def _participation_locked(campaign_id: str, contact_id) -> None:
    """Take the (campaign, contact) lock row, creating it on first use: one statement (an upsert
    locks the row it finds)."""
    if connection.vendor != "postgresql":
        CampaignParticipation.objects.bulk_create(
            [CampaignParticipation(campaign_id=campaign_id, contact_id=contact_id)], ignore_conflicts=True
        )
        CampaignParticipation.objects.select_for_update().filter(campaign_id=campaign_id, contact_id=contact_id).get()
        return
    table = CampaignParticipation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, contact_id, created_at) VALUES (%s, %s, %s) "
            f"ON CONFLICT (campaign_id, contact_id) DO UPDATE SET created_at = {table}.created_at",
            [uuid.UUID(str(campaign_id)), contact_id, timezone.now()],
        )


def _award_insert(spec: CampaignSpec, decision: Decision, contact: Contact, facts: CauseFacts) -> CampaignAward | None:
    """Record the award, or None when this cause already fired the campaign for the contact (a
    retry): the unique constraint decides, in one statement on PostgreSQL."""
    award = CampaignAward(
        campaign_id=spec.id,
        contact=contact,
        livemode=contact.livemode,
        cause=facts.key,
        occurred_at=facts.occurred_at,
        points=decision.points,
        money=decision.money,
        currency=decision.currency if decision.money else "",
        created_at=timezone.now(),
    )
    if connection.vendor != "postgresql":
        if CampaignAward.objects.filter(campaign_id=spec.id, cause=facts.key, contact=contact).exists():
            return None
        award.save()
        return award
    table = CampaignAward._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, contact_id, livemode, cause, occurred_at, points, money, currency, "
            "offers_issued, messages_sent, detail, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0, '{}'::jsonb, %s) "
            "ON CONFLICT (campaign_id, cause, contact_id) DO NOTHING RETURNING id",
            [
                uuid.UUID(str(spec.id)),
                contact.pk,
                award.livemode,
                award.cause,
                award.occurred_at,
                award.points,
                award.money,
                award.currency,
                award.created_at,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    award.pk = row[0]
    award._state.adding = False
    return award


def _goal_met(spec: CampaignSpec, decision: Decision, facts: CauseFacts, contact_id) -> bool:
    """Count the cause towards the goal (once per cause) and say whether the goal is reached:
    progress in the current period since the contact's last award of this campaign."""
    if not spec.goal_metric:
        return True
    if decision.contribution > 0:
        GoalContribution.objects.bulk_create(
            [
                GoalContribution(
                    campaign_id=spec.id,
                    contact_id=contact_id,
                    cause=facts.key,
                    amount=decision.contribution,
                    occurred_at=facts.occurred_at,
                )
            ],
            ignore_conflicts=True,
        )
    start = period_start(spec.goal_period, spec.goal_period_days, facts.occurred_at, spec.time_zone, spec.starts_at)
    progress, _ = goal_progress_at(campaign_id=spec.id, contact_id=contact_id, at=facts.occurred_at, start=start)
    return goal_reached(spec, progress)


def _within_contact_limit(spec: CampaignSpec, facts: CauseFacts, contact_id) -> bool:
    if spec.limit_per_contact is None:
        return True
    start = period_start(spec.limit_period, spec.limit_period_days, facts.occurred_at, spec.time_zone, spec.starts_at)
    awards = CampaignAward.objects.filter(campaign_id=spec.id, contact_id=contact_id)
    if start is not None:
        awards = awards.filter(occurred_at__gte=start)
    if spec.limit_period != "campaign":
        awards = awards.filter(occurred_at__lt=_period_end(spec, facts))
    return awards.count() < spec.limit_per_contact


def _period_end(spec: CampaignSpec, facts: CauseFacts):
    """The end of the limit period holding the cause (late arrivals count in their own period)."""
    from dateutil.relativedelta import relativedelta

    if spec.limit_period == "rolling":
        return facts.occurred_at + relativedelta(microseconds=1)
    start = period_start(spec.limit_period, spec.limit_period_days, facts.occurred_at, spec.time_zone, None)
    step = {
        "day": relativedelta(days=1),
        "week": relativedelta(weeks=1),
        "month": relativedelta(months=1),
        "year": relativedelta(years=1),
    }[spec.limit_period]
    return start + step


def _budget_taken(spec: CampaignSpec, decision: Decision) -> bool:
    """Take this award out of the campaign's budget: one conditional UPDATE, so parallel workers
    can never overspend (check constraints back it)."""
    if not spec.has_budget:
        return True
    guard = Q()
    if spec.budget_awards is not None:
        guard &= Q(awards_count__lte=spec.budget_awards - 1)
    if spec.budget_points is not None:
        guard &= Q(points_awarded__lte=spec.budget_points - decision.points)
    if spec.budget_money is not None:
        guard &= Q(money_awarded__lte=spec.budget_money - decision.money)
    return bool(
        Campaign.objects.filter(guard, pk=spec.id).update(
            awards_count=F("awards_count") + 1,
            points_awarded=F("points_awarded") + decision.points,
            money_awarded=F("money_awarded") + decision.money,
        )
    )


def _fire(*, spec: CampaignSpec, decision: Decision, contact: Contact, facts: CauseFacts, posting: Posting) -> Any:
    """The award (or None when a goal, limit or budget holds it back, or ALREADY_AWARDED)."""
    _participation_locked(spec.id, contact.pk)
    if CampaignAward.objects.filter(campaign_id=spec.id, cause=facts.key, contact=contact).exists():
        # A retry of a cause that already fired: asked before the goal and the limit, which the
        # first award has since changed.
        return ALREADY_AWARDED
    if not _goal_met(spec, decision, facts, contact.pk):
        return None
    if not _within_contact_limit(spec, facts, contact.pk):
        return None
    award = _award_insert(spec, decision, contact, facts)
    if award is None:
        return ALREADY_AWARDED
    if not _budget_taken(spec, decision):
        CampaignAward.objects.filter(pk=award.pk).delete()
        logger.info("campaign %s: budget exhausted", spec.id)
        return None
    key = f"cmp:{spec.id}:{facts.key}"
    cause_time = facts.occurred_at
    if decision.points > 0:
        points_earn(
            contact=contact,
            points=decision.points,
            cause=Cause(
                posting.source_type, posting.source_id, f"{key}:points", occurred_at=cause_time, reason=spec.name
            ),
            counts_for_tier=False,
        )
    if decision.money > 0:
        outcome = next(outcome for outcome in spec.outcomes if outcome.kind == "cashback")
        money_credit(
            contact=contact,
            kind=outcome.balance,
            currency=decision.currency,
            amount=decision.money,
            cause=Cause(
                posting.source_type, posting.source_id, f"{key}:cashback", occurred_at=cause_time, reason=spec.name
            ),
            spend_condition=SpendCondition.objects.get(pk=outcome.spend_condition_id)
            if outcome.spend_condition_id
            else None,
        )
    detail: dict[str, Any] = {}
    for offer_id in decision.offer_ids:
        try:
            issued = issued_offer_issue(
                offer=Offer.objects.get(pk=offer_id), contact=contact, source="campaign", actor=f"campaign:{spec.id}"
            )
            award.offers_issued += 1
            detail.setdefault("issued_offer_ids", []).append(str(issued.pk))
        except DomainError as error:
            # An offer paused or ended since the campaign was set up: the rest of the award stands.
            detail.setdefault("offers_not_issued", []).append({"offer_id": offer_id, "error": error.code})
    for outcome in decision.messages:
        message_facts = _message_facts(spec, contact, facts, posting)
        outbox_emit(
            livemode=contact.livemode,
            event_type="campaign.message",
            payload={
                "campaign_id": spec.id,
                "campaign_name": spec.name,
                "contact_id": str(contact.pk),
                "cause": {"type": facts.kind, "id": facts.key.split(":", 1)[1]},
                "variant": outcome.message_variant,
                "message": message_render(outcome.message_template or {}, message_facts),
            },
        )
        award.messages_sent += 1
    if award.offers_issued or award.messages_sent or detail:
        award.detail = detail
        CampaignAward.objects.filter(pk=award.pk).update(
            offers_issued=award.offers_issued, messages_sent=award.messages_sent, detail=detail
        )
    return award


def _message_facts(spec: CampaignSpec, contact: Contact, facts: CauseFacts, posting: Posting) -> dict[str, Any]:
    return {
        "campaign": {"id": spec.id, "name": spec.name},
        "contact": {
            "id": str(contact.pk),
            "member_number": contact.member_number,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "email": contact.email,
            "mobile_phone": contact.mobile_phone,
            "attributes": contact.attributes,
        },
        "cause": {"type": facts.kind, "id": facts.key.split(":", 1)[1], "occurred_at": facts.occurred_at.isoformat()},
        "event": {"type": facts.event_type, "attributes": facts.event_attributes} if facts.kind == "event" else None,
        **posting.facts_for_messages,
    }
