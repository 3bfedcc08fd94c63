"""Admin of the loyalty app: contacts, then wallets (ledger, tiers, rules, pay-outs, liability)."""

from loyalty.admin import contacts, wallets  # noqa: F401 - registers the model admins
