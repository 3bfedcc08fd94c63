"""What an erasure clears in purchases: the identifier a purchase named its contact by."""

from __future__ import annotations

from transactions.models import Transaction


def contact_transactions_anonymise(*, contact_id) -> int:
    """Forget the match key (a phone number, email or external id) of the contact's purchases;
    amounts, items and status stay so balances and reports still add up. Idempotent."""
    return (
        Transaction.objects.filter(contact_id=contact_id)
        .exclude(match_key="", match_source="")
        .update(match_key="", match_source="")
    )
