from datetime import UTC, datetime


def purchase_payload(external_id="T-1", contact=None, lines=3, **extra):
    payload = {
        "id": external_id,
        "occurred_at": datetime(2026, 11, 20, 12, 0, tzinfo=UTC).isoformat(),
        "currency": "EUR",
        "channel": "pos",
        "items": [
            {"sku": f"SKU{n}", "quantity": 1, "unit_price": "10.00", "amount": "10.00", "tax_included": "2.00"}
            for n in range(lines)
        ],
        "payments": [{"method": "card", "amount": f"{10 * lines}.00"}],
        "tax_total": f"{2 * lines}.00",
    }
    if contact is not None:
        payload["contact"] = contact
    payload.update(extra)
    return payload
