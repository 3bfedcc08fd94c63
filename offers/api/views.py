import uuid
from contextlib import contextmanager

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api.idempotency import idempotent
from core.api.views import ApiView, ManagementApiView, get_in_mode_or_404
from core.baskets import parse_basket_lines
from core.exceptions import DomainError, NotFound
from core.money import check_currency, format_minor
from loyalty.selectors import contact_get, contact_not_found, contact_reference_id, contact_resolve
from offers import selectors
from offers.api.serializers import (
    ExternalRedemptionInputSerializer,
    IssueInputSerializer,
    LockInputSerializer,
    LookupInputSerializer,
    OfferInputSerializer,
    RedeemInputSerializer,
    ReinstateInputSerializer,
    UnlockInputSerializer,
    evaluation_data,
    issued_offer_data,
    offer_data,
)
from offers.models import IssuedOffer, Offer
from offers.services import definitions, issued

TAGS = ["offers"]


class OffersApiView(ApiView):
    def actor(self) -> str:
        return f"api-key:{self.request.auth.prefix}"

    def context_from(self, basket: dict | None):
        """A validated basket → the engine's context (lines classified from the catalogue)."""
        if not basket:
            return None, None
        currency = check_currency(basket.get("currency") or "", field="basket.currency")
        lines = parse_basket_lines(basket.get("items"), currency=currency, field="basket.items")
        venue = selectors.venue_resolve(livemode=self.livemode, reference=basket.get("venue"))
        context = selectors.basket_context(
            livemode=self.livemode,
            currency=currency,
            lines=lines,
            venue=venue,
            channel=basket.get("channel"),
            at=basket.get("occurred_at"),
        )
        return context, currency

    def contact_id(self, contact_reference) -> uuid.UUID | None:
        """The named contact's id (the service then refuses another contact's offer), or None.
        A contact named by id is not read: its id either is the issued offer's contact's, or
        the service refuses it (see unknown_contact_first)."""
        if not contact_reference:
            return None
        return contact_reference_id(livemode=self.livemode, reference=contact_reference)

    @contextmanager
    def unknown_contact_first(self, contact_reference):
        """A request naming a contact by an id no contact of this mode has is answered NOT_FOUND
        for the contact whatever else is wrong with it, as when the contact was read first: on
        any domain error inside, the contact (not read until then, see contact_id) is checked."""
        try:
            yield
        except DomainError:
            if contact_reference and contact_reference.get("id"):
                contact_get(livemode=self.livemode, contact_id=contact_reference["id"], with_identifiers=False)
            raise

    def issued_offer(self, pk, contact_reference=None) -> IssuedOffer:
        """The issued offer in this mode — and of this contact, when the request names one."""
        issued_offer = get_in_mode_or_404(
            IssuedOffer.objects.filter(livemode=self.livemode).select_related("offer"), pk=pk
        )
        if contact_reference:
            contact = contact_resolve(livemode=self.livemode, reference=contact_reference)
            if contact.pk != issued_offer.contact_id:
                raise NotFound(
                    "This contact has no such issued offer.", parameters=[NotFound.parameter("id", value=str(pk))]
                )
        return issued_offer


class ContactOffersView(OffersApiView):
    @extend_schema(summary="A contact's issued, unexpired offers", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request, pk):
        contact = contact_get(livemode=self.livemode, contact_id=pk, with_identifiers=False)
        zone = timezone.get_current_timezone()
        return Response({"results": [issued_offer_data(i, zone) for i in selectors.issued_offers_of(contact=contact)]})


class LookupView(OffersApiView):
    @extend_schema(
        summary="Offers a contact can use, with the discount each gives on a basket",
        description="Without a basket: every available, unexpired issued offer. With a basket (at most 1,000 "
        "lines): only those that apply, each with its discount per line and in total, and the best combination "
        "under the stacking rules. With `explain: true` the others come back too, with the reasons they do not "
        "apply (min_spend_not_met, outside_hours, wrong_day, wrong_channel, wrong_venue, no_qualifying_items, "
        "locked_by_another_transaction, limit_reached, budget_exhausted, offer_paused, not_yet_valid, …).",
        request=LookupInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request):
        data = LookupInputSerializer.validated(request.data)
        # The contact is checked in the wallet's query, before the basket: an unknown contact is
        # answered as such whatever the basket holds.
        contact_id = contact_reference_id(livemode=self.livemode, reference=data["contact"])
        wallet = selectors.offers_wallet(livemode=self.livemode, contact_id=contact_id)
        if wallet is None:
            raise contact_not_found(contact_id)
        context, currency = self.context_from(data.get("basket"))
        results, combination = selectors.offers_lookup(
            wallet=wallet, context=context, transaction_id=data.get("transaction_id")
        )
        offers = []
        zone = timezone.get_current_timezone()
        for result in results:
            if not result.applicable and not data["explain"]:
                continue
            entry = {
                "issued_offer": issued_offer_data(result.issued, zone),
                "applicable": result.applicable,
                **evaluation_data(result.evaluation if result.applicable else None, currency),
            }
            if data["explain"]:
                entry["reasons"] = result.reasons
            offers.append(entry)
        # The engine names offers, the response names issued offers: a contact may hold two copies
        # of one offer, and each copy in the combination must be named once.
        copies: dict[str, list[str]] = {}
        for result in results:
            if result.applicable:
                copies.setdefault(str(result.issued.offer_id), []).append(str(result.issued.pk))
        body = {"contact_id": str(contact_id), "offers": offers}
        if context is not None:
            total = sum(evaluation.discount for evaluation in combination)
            body["best_combination"] = {
                "issued_offer_ids": [copies[evaluation.offer_id].pop(0) for evaluation in combination],
                "discount": format_minor(total, currency),
            }
        return Response(body)


class IssueView(OffersApiView):
    @extend_schema(
        summary="Issue an offer to a contact",
        request=IssueInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request, offer_id):
        data = IssueInputSerializer.validated(request.data)
        offer = get_in_mode_or_404(Offer.objects.filter(livemode=self.livemode), name="offer_id", pk=offer_id)
        contact = contact_resolve(livemode=self.livemode, reference=data["contact"])
        issued_offer = issued.issued_offer_issue(
            offer=offer,
            contact=contact,
            expires_at=data.get("expires_at"),
            external_reference=data.get("external_reference"),
            actor=self.actor(),
        )
        return Response(issued_offer_data(issued_offer), status=status.HTTP_201_CREATED)


class LockView(OffersApiView):
    @extend_schema(
        summary="Lock an issued offer to a transaction and price it",
        description="Default TTL 900 s. The same transaction may lock again (re-priced); another gets 409 "
        "OFFER_LOCKED until the lock expires. 409 OFFER_NOT_APPLICABLE when the basket does not qualify.",
        request=LockInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request, pk):
        data = LockInputSerializer.validated(request.data)
        with self.unknown_contact_first(data.get("contact")):
            contact_id = self.contact_id(data.get("contact"))
            context, currency = self.context_from(data["basket"])
            # The service reads the offer under its row lock, in this mode (and of this contact).
            issued_offer, evaluation = issued.issued_offer_lock(
                issued_offer_id=pk,
                transaction_id=data["transaction_id"],
                context=context,
                ttl_seconds=data.get("ttl_seconds"),
                actor=self.actor(),
                livemode=self.livemode,
                contact_id=contact_id,
            )
        return Response({**issued_offer_data(issued_offer), **evaluation_data(evaluation, currency)})


class UnlockView(OffersApiView):
    @extend_schema(
        summary="Release a lock", request=UnlockInputSerializer, responses={200: OpenApiTypes.OBJECT}, tags=TAGS
    )
    def post(self, request, pk):
        data = UnlockInputSerializer.validated(request.data)
        issued_offer = self.issued_offer(pk, data.get("contact"))
        issued_offer = issued.issued_offer_unlock(
            issued_offer_id=issued_offer.pk, transaction_id=data.get("transaction_id"), actor=self.actor()
        )
        return Response(issued_offer_data(issued_offer))


class RedeemView(OffersApiView):
    @extend_schema(
        summary="Redeem an issued offer (immediate, non-transient)",
        description="Refused (409 OFFER_LOCKED) when another transaction holds a live lock; allowed through the "
        "transaction holding it. A second redemption is 409 OFFER_NOT_AVAILABLE.",
        request=RedeemInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request, pk):
        data = RedeemInputSerializer.validated(request.data)
        with self.unknown_contact_first(data.get("contact")):
            contact_id = self.contact_id(data.get("contact"))
            context, currency = self.context_from(data.get("basket"))
            issued_offer, evaluation = issued.issued_offer_redeem(
                issued_offer_id=pk,
                transaction_id=data.get("transaction_id"),
                context=context,
                actor=self.actor(),
                livemode=self.livemode,
                contact_id=contact_id,
            )
        return Response({**issued_offer_data(issued_offer), **evaluation_data(evaluation, currency)})


class ReinstateView(OffersApiView):
    @extend_schema(
        summary="Undo a redemption", request=ReinstateInputSerializer, responses={200: OpenApiTypes.OBJECT}, tags=TAGS
    )
    def post(self, request, pk):
        data = ReinstateInputSerializer.validated(request.data)
        issued_offer = self.issued_offer(pk, data.get("contact"))
        issued_offer = issued.issued_offer_reinstate(
            issued_offer_id=issued_offer.pk, actor=self.actor(), reason=data.get("reason", "")
        )
        return Response(issued_offer_data(issued_offer))


class ExternalRedemptionView(OffersApiView):
    @extend_schema(
        summary="An external offer system reports a redemption",
        description="By issued_offer_id or the external reference. Repeating the same report is answered 200 "
        "with the same issued offer; a redemption by another transaction is 409.",
        request=ExternalRedemptionInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = ExternalRedemptionInputSerializer.validated(request.data)
        issued_offer, created = issued.external_redemption_record(
            livemode=self.livemode,
            issued_offer_id=data.get("issued_offer_id"),
            external_reference=data.get("external_reference"),
            redeemed_at=data.get("redeemed_at"),
            transaction_id=data.get("transaction_id", ""),
            actor=self.actor(),
        )
        return Response(issued_offer_data(issued_offer), status=status.HTTP_201_CREATED if created else 200)


class OfferCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Offer.objects.none()  # for the schema only

    @extend_schema(summary="List offer definitions", responses={200: OpenApiTypes.OBJECT}, tags=["management: offers"])
    def get(self, request):
        page = self.paginate_queryset(selectors.offer_list(livemode=self.livemode))
        return self.get_paginated_response([offer_data(offer) for offer in page])

    @extend_schema(
        summary="Create an offer definition",
        request=OfferInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=["management: offers"],
    )
    @idempotent
    def post(self, request):
        data = OfferInputSerializer.validated(request.data)
        offer = definitions.offer_create(livemode=self.livemode, **data)
        offer = selectors.offer_list(livemode=self.livemode).get(pk=offer.pk)
        return Response(offer_data(offer), status=status.HTTP_201_CREATED)


class OfferDetailView(ManagementApiView):
    def get_object(self):
        return get_in_mode_or_404(selectors.offer_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get an offer definition", responses={200: OpenApiTypes.OBJECT}, tags=["management: offers"])
    def get(self, request, pk):
        return Response(offer_data(self.get_object()))

    @extend_schema(
        summary="Update an offer definition",
        description="`restrictions` and `venues`, when sent, replace the lists.",
        request=OfferInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=["management: offers"],
    )
    def patch(self, request, pk):
        data = OfferInputSerializer.validated(request.data, partial=True)
        offer = definitions.offer_update(offer=self.get_object(), **data)
        return Response(offer_data(selectors.offer_list(livemode=self.livemode).get(pk=offer.pk)))
