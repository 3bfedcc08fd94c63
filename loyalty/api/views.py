from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from core.api.idempotency import idempotent
from core.api.serializers import MATCH_KEY_TYPES
from core.api.views import ApiView, ManagementApiView, get_in_mode_or_404
from core.exceptions import ValidationError
from loyalty import selectors, services
from loyalty.api.serializers import (
    ContactInputSerializer,
    ContactSerializer,
    ContactUpdateSerializer,
    EarningRuleInputSerializer,
    EarningRuleSerializer,
    LedgerEntrySerializer,
    LedgerFilterSerializer,
    SpendTokenSerializer,
    TierInputSerializer,
    TierSerializer,
    WalletSerializer,
)
from loyalty.models import Account, Contact, EarningRule, LedgerEntry, Tier
from loyalty.selectors import wallets as wallet_selectors
from loyalty.services import earning as earning_services
from loyalty.services import tiers as tier_services
from loyalty.services import wallets as wallet_services

MATCH_KEY_PARAMETERS = [
    OpenApiParameter("match_key", str, description="The identifier's value, e.g. +46707234567."),
    OpenApiParameter("match_key_type", str, enum=list(MATCH_KEY_TYPES), description="Required with match_key."),
    OpenApiParameter("source", str, description="Namespace of an external_id; omitted = any source."),
]


class ContactCollectionView(ApiView):
    lists_on_get = True
    queryset = Contact.objects.none()  # for the schema only: data comes from selectors
    serializer_class = ContactSerializer

    @extend_schema(
        summary="Identify a contact by any identifier, or list contacts",
        description="With `match_key` and `match_key_type`: the one matching contact in `results`, or 404 "
        "NOT_FOUND; 409 AMBIGUOUS_MATCH_KEY when an external id without source matches several. Phones "
        "match in any usual format, emails in any case. Without them: all contacts, newest first, in "
        "cursor pages.",
        parameters=MATCH_KEY_PARAMETERS,
        tags=["contacts"],
    )
    def get(self, request):
        match_key = request.query_params.get("match_key")
        match_key_type = request.query_params.get("match_key_type")
        if match_key is None and match_key_type is None:
            return self.paginated(selectors.contact_list(livemode=self.livemode), ContactSerializer)
        if not match_key or not match_key_type:
            missing = "match_key" if not match_key else "match_key_type"
            raise ValidationError.for_field(missing, "match_key and match_key_type go together.")
        if "source" in request.query_params and match_key_type != "external_id":
            raise ValidationError.for_field("source", "Only external_id match keys take a source.")
        contact = selectors.contact_find(
            livemode=self.livemode,
            match_key=match_key,
            match_key_type=match_key_type,
            source=request.query_params.get("source"),
        )
        return Response({"next": None, "previous": None, "results": [ContactSerializer(contact).data]})

    @extend_schema(
        summary="Register a contact",
        request=ContactInputSerializer,
        responses={201: ContactSerializer},
        tags=["contacts"],
    )
    @idempotent
    def post(self, request):
        data = ContactInputSerializer.validated(request.data)
        contact = services.contact_create(livemode=self.livemode, **data)
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailView(ApiView):
    serializer_class = ContactSerializer

    def get_object(self):
        return selectors.contact_get(livemode=self.livemode, contact_id=self.kwargs["pk"])

    @extend_schema(summary="Get a contact", tags=["contacts"])
    def get(self, request, pk):
        return Response(ContactSerializer(self.get_object()).data)

    @extend_schema(
        summary="Update a contact",
        description="Only the fields sent change. `attributes` are merged (null deletes one); `external_ids` "
        "are added (identifiers are permanent); `email`/`mobile_phone` null removes them.",
        request=ContactUpdateSerializer,
        tags=["contacts"],
    )
    def patch(self, request, pk):
        data = ContactUpdateSerializer.validated(request.data, partial=True)
        contact = services.contact_update(contact=self.get_object(), **data)
        contact = selectors.contact_get(livemode=self.livemode, contact_id=contact.pk)
        return Response(ContactSerializer(contact).data)


class ContactWalletView(ApiView):
    @extend_schema(
        summary="A contact's wallet",
        description="Points (balance, available, pending, debt, next expiring), money balances per kind and "
        "currency (commerce lots with their spend conditions), tier and progress to the next tier.",
        responses={200: WalletSerializer},
        tags=["wallets"],
    )
    def get(self, request, pk):
        contact = selectors.contact_get(livemode=self.livemode, contact_id=pk, with_identifiers=False)
        return Response(wallet_selectors.wallet_summary(contact=contact))


class LedgerPagination(CursorPagination):
    ordering = ("-id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ContactLedgerView(ApiView):
    lists_on_get = True
    queryset = LedgerEntry.objects.none()  # for the schema only: data comes from selectors
    pagination_class = LedgerPagination
    serializer_class = LedgerEntrySerializer

    @extend_schema(
        summary="A contact's ledger, newest first",
        parameters=[
            OpenApiParameter("kind", str, enum=list(LedgerEntry.Kind.values)),
            OpenApiParameter("account", str, enum=list(Account.Kind.values), description="points, open or commerce"),
        ],
        tags=["wallets"],
    )
    def get(self, request, pk):
        contact = selectors.contact_get(livemode=self.livemode, contact_id=pk)
        query = LedgerFilterSerializer.validated(request.query_params.dict())
        entries = wallet_selectors.ledger_entries(
            contact=contact, kind=query.get("kind"), account_kind=query.get("account")
        )
        return self.paginated(entries, LedgerEntrySerializer)


class SpendTokenView(ApiView):
    @extend_schema(
        summary="Issue a one-time spend token (OTP)",
        description="A short numeric code, shown only in this response, valid for the program's OTP lifetime, "
        "single use; earlier codes stop working. Give it as `spend.otp` when spending.",
        request=None,
        responses={201: SpendTokenSerializer},
        tags=["wallets"],
    )
    def post(self, request, pk):
        # Deliberately not replayed through Idempotency-Key: the code would have to be stored in
        # clear. A repeat simply issues a fresh code and the earlier one stops working.
        contact = selectors.contact_get(livemode=self.livemode, contact_id=pk)
        token, code = wallet_services.spend_token_issue(contact=contact)
        return Response(
            {"id": str(token.pk), "code": code, "expires_at": token.expires_at, "max_attempts": token.max_attempts},
            status=status.HTTP_201_CREATED,
        )


class TierCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Tier.objects.none()  # for the schema only: data comes from selectors
    serializer_class = TierSerializer

    @extend_schema(summary="List tiers", tags=["management: program"])
    def get(self, request):
        return self.paginated(wallet_selectors.tier_list(livemode=self.livemode), TierSerializer)

    @extend_schema(
        summary="Create a tier",
        request=TierInputSerializer,
        responses={201: TierSerializer},
        tags=["management: program"],
    )
    @idempotent
    def post(self, request):
        data = TierInputSerializer.validated(request.data)
        tier = tier_services.tier_create(livemode=self.livemode, **data)
        return Response(TierSerializer(tier).data, status=status.HTTP_201_CREATED)


class TierDetailView(ManagementApiView):
    serializer_class = TierSerializer

    def get_object(self):
        return get_in_mode_or_404(wallet_selectors.tier_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get a tier", tags=["management: program"])
    def get(self, request, pk):
        return Response(TierSerializer(self.get_object()).data)

    @extend_schema(summary="Update a tier", request=TierInputSerializer, tags=["management: program"])
    def patch(self, request, pk):
        data = TierInputSerializer.validated(request.data, partial=True)
        tier = tier_services.tier_update(tier=self.get_object(), **data)
        return Response(TierSerializer(tier).data)


class EarningRuleCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = EarningRule.objects.none()  # for the schema only: data comes from selectors
    serializer_class = EarningRuleSerializer

    @extend_schema(summary="List earning rules", tags=["management: program"])
    def get(self, request):
        return self.paginated(wallet_selectors.earning_rule_list(livemode=self.livemode), EarningRuleSerializer)

    @extend_schema(
        summary="Create an earning rule",
        request=EarningRuleInputSerializer,
        responses={201: EarningRuleSerializer},
        tags=["management: program"],
    )
    @idempotent
    def post(self, request):
        data = EarningRuleInputSerializer.validated(request.data)
        data["tier"] = _tier_in_mode(self.livemode, data.get("tier"))
        rule = earning_services.earning_rule_create(livemode=self.livemode, **data)
        rule = get_in_mode_or_404(wallet_selectors.earning_rule_list(livemode=self.livemode), pk=rule.pk)
        return Response(EarningRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


def _tier_in_mode(livemode: bool, tier_id):
    if tier_id is None:
        return None
    return get_in_mode_or_404(wallet_selectors.tier_list(livemode=livemode), name="tier", pk=tier_id)


class EarningRuleDetailView(ManagementApiView):
    serializer_class = EarningRuleSerializer

    def get_object(self):
        return get_in_mode_or_404(wallet_selectors.earning_rule_list(livemode=self.livemode), pk=self.kwargs["pk"])

    @extend_schema(summary="Get an earning rule", tags=["management: program"])
    def get(self, request, pk):
        return Response(EarningRuleSerializer(self.get_object()).data)

    @extend_schema(
        summary="Update an earning rule",
        description="`exclusions`, when sent, replaces the list.",
        request=EarningRuleInputSerializer,
        tags=["management: program"],
    )
    def patch(self, request, pk):
        data = EarningRuleInputSerializer.validated(request.data, partial=True)
        if "tier" in data:
            data["tier"] = _tier_in_mode(self.livemode, data["tier"])
        rule = earning_services.earning_rule_update(rule=self.get_object(), **data)
        rule = get_in_mode_or_404(wallet_selectors.earning_rule_list(livemode=self.livemode), pk=rule.pk)
        return Response(EarningRuleSerializer(rule).data)
