"""How campaigns plug into the layers below: the purchase-processed hook of `transactions`, and
in-process listeners of the outbox events `contact.created` and `tier.changed` (which raise
system events in the same transaction as the change)."""

from __future__ import annotations

import uuid

from django.db.models.signals import post_delete, post_save

from campaigns.models import Campaign, CampaignAward, Event, GoalContribution
from campaigns.selectors import PURCHASE_TRIGGERS, audience_lists_holding, campaigns_in_force
from campaigns.services.engine import CauseFacts
from campaigns.services.evaluation import Posting, campaigns_apply
from campaigns.services.events import contact_events_anonymise, system_event_raise
from core.selectors import config_cache_clear
from core.services import outbox_listener
from loyalty.models import LedgerEntry
from loyalty.selectors.contacts import contact_export_section
from loyalty.services.erasure import contact_erased_hook
from offers.services.engine import BasketContext
from transactions.models import Transaction
from transactions.services.processing import PURCHASE_PROCESSED_HOOKS, PurchaseFacts

_registered = False


def purchase_processed(facts: PurchaseFacts) -> None:
    """Fire the purchase campaigns in force at the purchase's `occurred_at` (late arrivals are
    judged by the rules of their own time). Runs inside the purchase's processing transaction."""
    txn = facts.transaction
    specs = campaigns_in_force(livemode=txn.livemode, triggers=PURCHASE_TRIGGERS, at=txn.occurred_at)
    if not specs:
        return
    contact = facts.contact
    purchase_number = None
    if any(spec.nth_purchase for spec in specs):
        earlier = Transaction.objects.filter(
            contact=contact, status=Transaction.Status.PROCESSED, occurred_at__lt=txn.occurred_at
        ).count()
        purchase_number = earlier + 1
    list_campaigns = [spec.id for spec in specs if spec.audience == "list"]
    cause = CauseFacts(
        kind="purchase",
        key=f"txn:{txn.pk}",
        occurred_at=txn.occurred_at,
        contact_id=str(contact.pk),
        tier_id=facts.tier.pk if facts.tier else None,
        contact_attributes=contact.attributes or {},
        audience_list_campaign_ids=audience_lists_holding(contact_id=contact.pk, campaign_ids=list_campaigns),
        basket=BasketContext(
            lines=facts.lines,
            currency=txn.currency,
            at=txn.occurred_at,
            channel=txn.channel or None,
            venue_id=str(txn.venue_id) if txn.venue_id else None,
            venue_time_zone=txn.venue.time_zone if txn.venue_id else "UTC",
        ),
        base_points=facts.base_points,
        purchase_number=purchase_number,
    )
    campaigns_apply(
        contact=contact,
        facts=cause,
        specs=specs,
        posting=Posting(
            LedgerEntry.Source.TRANSACTION,
            txn.external_id,
            facts_for_messages={
                "transaction": {
                    "id": txn.external_id,
                    "occurred_at": txn.occurred_at.isoformat(),
                    "currency": txn.currency,
                    "channel": txn.channel,
                    "venue_id": str(txn.venue_id) if txn.venue_id else None,
                    "base_points": facts.base_points,
                }
            },
        ),
    )


def contact_created(livemode: bool, payload: dict) -> None:
    system_event_raise(
        livemode=livemode,
        contact_id=payload["id"],
        trigger=Campaign.Trigger.CONTACT_REGISTERED,
        event_type="contact.registered",
        key=f"registered:{payload['id']}",
    )


def tier_changed(livemode: bool, payload: dict) -> None:
    system_event_raise(
        livemode=livemode,
        contact_id=payload["contact_id"],
        trigger=Campaign.Trigger.TIER_CHANGED,
        event_type="tier.changed",
        key=f"tier:{payload['contact_id']}:{uuid.uuid4().hex}",
        attributes={
            "from_tier_id": payload.get("from_tier_id"),
            "to_tier_id": payload.get("to_tier_id"),
            "from_tier": payload.get("from_tier"),
            "to_tier": payload.get("to_tier"),
        },
    )


def _export_rows(queryset) -> list[dict]:
    return [{field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields} for row in queryset]


def export_events(contact_id) -> list[dict]:
    return _export_rows(Event.objects.filter(contact_id=contact_id).order_by("occurred_at", "id"))


def export_awards(contact_id) -> list[dict]:
    return _export_rows(CampaignAward.objects.filter(contact_id=contact_id).order_by("occurred_at", "id"))


def export_goal_contributions(contact_id) -> list[dict]:
    return _export_rows(GoalContribution.objects.filter(contact_id=contact_id).order_by("occurred_at", "id"))


def register() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    PURCHASE_PROCESSED_HOOKS.append(purchase_processed)
    outbox_listener("contact.created")(contact_created)
    outbox_listener("tier.changed")(tier_changed)
    contact_erased_hook(lambda contact_id: contact_events_anonymise(contact_id=contact_id))
    contact_export_section("campaign_events")(export_events)
    contact_export_section("campaign_awards")(export_awards)
    contact_export_section("campaign_goal_contributions")(export_goal_contributions)
    # "Is any campaign listening for registrations?" is cached a few seconds per process.
    post_save.connect(config_cache_clear, sender=Campaign, dispatch_uid="config-cache-campaign")
    post_delete.connect(config_cache_clear, sender=Campaign, dispatch_uid="config-cache-del-campaign")
