"""A believable small world for trying the back-office: places, a catalogue, staff, contacts
with wallets and tiers, offers in their wallets, and purchases processed into points.

It lives in the top-most app because it seeds every layer.

Idempotent: run it as often as you like; what exists is left alone. Demo data is written in
test mode (visible to lk_test_ keys), the way a program is tried before going live.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from catalogue import services as catalogue_services
from catalogue.models import Merchant, Product, Venue
from core.baskets import BasketLine
from core.models import ApiKey
from core.services import api_key_create
from loyalty import services as loyalty_services
from loyalty.models import Contact, EarningRule, SpendCondition, Tier
from loyalty.services.earning import earning_rule_create
from loyalty.services.ledger import Cause
from loyalty.services.tiers import tier_create, tier_evaluate
from loyalty.services.wallets import money_credit, points_earn, program_for
from offers.models import IssuedOffer, Offer
from offers.services.definitions import offer_create
from offers.services.issued import issued_offer_issue
from transactions.models import Transaction
from transactions.services.intake import Purchase, transaction_intake

LIVEMODE = False

MERCHANTS = [
    (
        "1001",
        "Nordic Grocers",
        [("01", "Stockholm Central", "Europe/Stockholm"), ("02", "Gothenburg Harbour", "Europe/Stockholm")],
    ),
    ("2001", "Café Aurora", [("01", "Aurora Södermalm", "Europe/Stockholm")]),
]

PRODUCTS = [
    ("7310865004703", "Whole milk 1 l", "dairy", "arla"),
    ("7310865071804", "Greek yoghurt 500 g", "dairy", "arla"),
    ("7311041013663", "Sourdough loaf", "bakery", "pagen"),
    ("7311041029008", "Cinnamon buns 6-pack", "bakery", "pagen"),
    ("7310070765840", "Ground coffee 450 g", "beverages", "gevalia"),
    ("7310070003423", "Espresso beans 1 kg", "beverages", "gevalia"),
    ("7340011493373", "Sparkling water 1.5 l", "beverages", "loka"),
    ("2000000000015", "Bananas per kg", "produce", None),
    ("2000000000022", "Apples Ingrid Marie per kg", "produce", None),
    ("7318690123456", "Dish soap 500 ml", "household", "yes"),
    ("CAFE-LATTE", "Caffè latte", "cafe-drinks", "aurora"),
    ("CAFE-BUN", "Cardamom bun", "cafe-bakery", "aurora"),
]

CONTACTS = [
    {
        "first_name": "Astrid",
        "last_name": "Lindqvist",
        "email": "astrid.lindqvist@example.com",
        "mobile_phone": "+46701234561",
        "birth_date": date(1986, 3, 14),
        "consents": {"email": True, "sms": True},
        "external_ids": [{"source": "pos", "id": "POS-000341"}],
        "attributes": {"favourite_store": "Stockholm Central"},
    },
    {
        "first_name": "Erik",
        "last_name": "Johansson",
        "email": "erik.johansson@example.com",
        "mobile_phone": "+46701234562",
        "birth_date": date(1979, 11, 2),
        "consents": {"email": True, "sms": False},
        "external_ids": [{"source": "webshop", "id": "cust_88412"}],
    },
    {
        "first_name": "Maja",
        "last_name": "Karlsson",
        "email": "maja.karlsson@example.com",
        "mobile_phone": "+46701234563",
        "birth_date": date(1995, 6, 30),
        "consents": {"email": False, "sms": True},
        "attributes": {"household_size": 3},
    },
    {
        "first_name": "Oskar",
        "last_name": "Nilsson",
        "email": "oskar.nilsson@example.com",
        "mobile_phone": "+46701234564",
        "external_ids": [{"source": "pos", "id": "POS-000512"}, {"source": "app", "id": "a-19f2"}],
    },
    {
        "first_name": "Elsa",
        "last_name": "Berg",
        "email": "elsa.berg@example.com",
        "mobile_phone": "+46701234565",
        "birth_date": date(2001, 1, 19),
        "consents": {"email": True, "sms": True},
    },
    {
        "first_name": "Liam",
        "last_name": "Svensson",
        "email": "liam.svensson@example.com",
        "mobile_phone": "+46701234566",
        "external_ids": [{"source": "webshop", "id": "cust_90017"}],
    },
    {
        "first_name": "Freja",
        "last_name": "Holm",
        "email": "freja.holm@example.com",
        "mobile_phone": "+46701234567",
        "attributes": {"preferred_language": "sv"},
    },
    {"first_name": "Noah", "last_name": "Ek", "email": "noah.ek@example.com", "mobile_phone": "+46701234568"},
]

STAFF = [("marketer", "Marketers"), ("agent", "Order agents"), ("integrator", "Integration admins")]


class Command(BaseCommand):
    help = "Create demo places, catalogue, staff users and contacts (test mode). Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        created = {"merchants": 0, "venues": 0, "products": 0, "contacts": 0}
        for number, name, venues in MERCHANTS:
            merchant = Merchant.objects.filter(livemode=LIVEMODE, number=number).first()
            if merchant is None:
                merchant = catalogue_services.merchant_create(livemode=LIVEMODE, number=number, name=name)
                created["merchants"] += 1
            for venue_number, venue_name, time_zone in venues:
                if not Venue.objects.filter(merchant=merchant, number=venue_number).exists():
                    catalogue_services.venue_create(
                        merchant=merchant, number=venue_number, name=venue_name, time_zone=time_zone
                    )
                    created["venues"] += 1
        for sku, name, family, brand in PRODUCTS:
            if not Product.objects.filter(livemode=LIVEMODE, sku=sku).exists():
                catalogue_services.product_create(livemode=LIVEMODE, sku=sku, name=name, family=family, brand=brand)
                created["products"] += 1
        for contact in CONTACTS:
            if not Contact.objects.filter(livemode=LIVEMODE, email=contact["email"]).exists():
                loyalty_services.contact_create(livemode=LIVEMODE, **contact)
                created["contacts"] += 1
        self._program()
        self._wallets()
        self._offers()
        self._purchases()
        self._staff()
        summary = ", ".join(f"{count} {kind}" for kind, count in created.items())
        self.stdout.write(f"Demo data ready (created now: {summary}).")
        self._demo_key()

    def _program(self) -> None:
        program = program_for(livemode=LIVEMODE)
        program.name, program.currency, program.pending_days = "Nordic Rewards", "SEK", 0
        program.save()
        for rank, name, threshold, multiplier in [(1, "Silver", 1000, "1.25"), (2, "Gold", 5000, "1.50")]:
            if not Tier.objects.filter(livemode=LIVEMODE, rank=rank).exists():
                tier_create(
                    livemode=LIVEMODE, name=name, rank=rank, threshold=threshold, multiplier=Decimal(multiplier)
                )
        if not EarningRule.objects.filter(livemode=LIVEMODE).exists():
            earning_rule_create(
                livemode=LIVEMODE,
                name="1 point per krona",
                currency="SEK",
                points_per_unit=Decimal(1),
                exclusions=[{"kind": "family", "value": "household"}],
            )

    def _wallets(self) -> None:
        contacts = list(Contact.objects.filter(livemode=LIVEMODE, email__in=[c["email"] for c in CONTACTS]))
        cafe = SpendCondition.objects.filter(livemode=LIVEMODE, name="Café Aurora only").first()
        if cafe is None:
            cafe = SpendCondition.objects.create(livemode=LIVEMODE, name="Café Aurora only")
            cafe.venues.set(Venue.objects.filter(livemode=LIVEMODE, merchant__number="2001"))
        now = timezone.now()
        for index, contact in enumerate(sorted(contacts, key=lambda c: c.email)):
            for visit in range(index + 2):
                occurred_at = now - timedelta(days=30 * visit + index)
                key = f"demo:earn:{contact.member_number}:{visit}"
                points_earn(
                    contact=contact,
                    points=150 * (index + 1) + 40 * visit,
                    cause=Cause("transaction", key, key, occurred_at=occurred_at),
                )
            key = f"demo:cashback:{contact.member_number}"
            money_credit(
                contact=contact,
                kind="commerce",
                currency="SEK",
                amount=2500,
                spend_condition=cafe,
                cause=Cause("campaign", key, key),
                expires_at=now + timedelta(days=60),
            )
            tier_evaluate(contact=contact)

    def _offers(self) -> None:
        contacts = list(Contact.objects.filter(livemode=LIVEMODE, email__in=[c["email"] for c in CONTACTS]))
        definitions = [
            ("20% off dairy", "percent_off", Decimal(20), [{"kind": "family", "value": "dairy"}], 0),
            (
                "Free cinnamon bun with any coffee",
                "free_item",
                Decimal(0),
                [{"kind": "family", "value": "bakery"}, {"kind": "family", "value": "beverages"}],
                5000,
            ),
            ("Double points on produce", "points_multiplier", Decimal(2), [{"kind": "family", "value": "produce"}], 0),
        ]
        for name, benefit, value, restrictions, min_spend in definitions:
            offer = Offer.objects.filter(livemode=LIVEMODE, name=name).first()
            if offer is None:
                offer = offer_create(
                    livemode=LIVEMODE,
                    name=name,
                    status="active",
                    benefit_type=benefit,
                    benefit_value=value,
                    currency="SEK",
                    restrictions=restrictions,
                    min_spend=min_spend,
                    redemptions_per_contact=1,
                    description=f"Demo offer: {name.lower()}.",
                )
            for contact in contacts:
                if not IssuedOffer.objects.filter(offer=offer, contact=contact).exists():
                    issued_offer_issue(offer=offer, contact=contact, source="demo")

    def _purchases(self) -> None:
        contacts = sorted(
            Contact.objects.filter(livemode=LIVEMODE, email__in=[c["email"] for c in CONTACTS]), key=lambda c: c.email
        )
        venue = Venue.objects.filter(livemode=LIVEMODE, merchant__number="1001").order_by("number").first()
        products = list(Product.objects.filter(livemode=LIVEMODE).order_by("sku")[:6])
        for index, contact in enumerate(contacts[:4]):
            external_id = f"DEMO-{contact.member_number}"
            if Transaction.objects.filter(livemode=LIVEMODE, external_id=external_id).exists():
                continue
            lines = [
                BasketLine(sku=product.sku, amount=2990 + 500 * n, quantity=Decimal(1), unit_price=2990 + 500 * n)
                for n, product in enumerate(products[: index + 2])
            ]
            purchase = Purchase(
                external_id=external_id,
                fingerprint=external_id,
                occurred_at=timezone.now() - timedelta(days=index),
                currency="SEK",
                lines=lines,
                contact_reference={"id": str(contact.pk)},
                venue=venue,
                channel="pos",
                receipt_number=f"{1000 + index}",
            )
            transaction_intake(livemode=LIVEMODE, purchase=purchase)

    def _staff(self) -> None:
        if settings.DEBUG and not User.objects.filter(is_superuser=True).exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created superuser admin / admin (development only).")
        if not settings.DEBUG:
            return
        for username, group_name in STAFF:
            if User.objects.filter(username=username).exists():
                continue
            user = User.objects.create_user(username, f"{username}@example.com", username, is_staff=True)
            user.groups.add(Group.objects.get(name=group_name))
            self.stdout.write(f"Created staff user {username} / {username} in group {group_name}.")

    def _demo_key(self) -> None:
        if ApiKey.objects.filter(name="Demo test key", revoked=False).exists():
            self.stdout.write(
                "The demo test key exists already (shown once, when it was made); "
                "make another with: manage.py create_api_key --name NAME --mode test"
            )
            return
        _, key = api_key_create(name="Demo test key", livemode=False, scopes=("integration", "management"))
        self.stdout.write(f"Demo API key (test mode, shown once): {key}")
