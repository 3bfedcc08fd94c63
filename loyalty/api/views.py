from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from core.api.exception_handler import STATUS_BY_KIND, flatten_validation_detail, render_parameters
from core.api.idempotency import idempotent
from core.api.serializers import MATCH_KEY_TYPES
from core.api.views import ApiView, ManagementApiView, get_in_mode_or_404
from core.exceptions import LimitExceeded, ValidationError
from loyalty import selectors, services
from loyalty.api.renderers import RenderedJSON, RenderedJSONRenderer
from loyalty.api.serializers import (
    BulkContactRowSerializer,
    BulkContactsInputSerializer,
    BulkContactsResultSerializer,
    ContactChangePageSerializer,
    ContactChangesQuerySerializer,
    ContactErasedSerializer,
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
    bulk_contact_row_validated,
    contact_change_page_data,
    contact_change_page_json,
)
from loyalty.models import Account, Contact, EarningRule, LedgerEntry, Tier
from loyalty.selectors import changes as change_selectors
from loyalty.selectors import wallets as wallet_selectors
from loyalty.services import contacts as contact_services
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


class ContactChangesView(ApiView):
    renderer_classes = [RenderedJSONRenderer]

    @extend_schema(
        summary="Read contact changes since a cursor (local contact caches)",
        description="Every committed change to a contact (`created`, `updated`, `identifiers_changed`, "
        "`tier_changed`, `erased`) in commit order, up to `page_size` (at most 1,000) per page. Each item "
        "carries the contact as it is now (the representation of GET /contacts/{id}); an erasure carries "
        "only `{id}` and the contact must be deleted locally. An empty cursor starts from the beginning: "
        "the primary download gives the latest change of every contact (older superseded changes are "
        "compacted after the retention). Store `next_cursor` after applying a page and resume from it "
        "(also after a crash): no change is ever skipped, even when writers commit out of order — a "
        "change appears once every transaction that started before it has ended. `has_more` false "
        "means caught up for now: poll again later. A cursor older than the retention gets 409 "
        "CURSOR_EXPIRED: download everything again from an empty cursor. A cursor that is not ours: "
        "400 naming `cursor`.",
        parameters=[
            OpenApiParameter("cursor", str, description="next_cursor of the previous page; empty = from the start."),
            OpenApiParameter("page_size", int, description="1 to 1,000 (default 1,000)."),
        ],
        responses={200: ContactChangePageSerializer},
        tags=["contacts"],
    )
    def get(self, request):
        query = ContactChangesQuerySerializer.validated(request.query_params.dict())
        page = change_selectors.contact_changes_page(
            livemode=self.livemode, cursor=query["cursor"], page_size=query["page_size"]
        )
        # Written straight to JSON, contact by contact: a page of a thousand as a tree of dicts
        # made the garbage collector walk the whole heap every few pages.
        return Response(RenderedJSON(contact_change_page_json(page), lambda: contact_change_page_data(page)))


def _row_error(status_code: int, code: str, message: str, parameters: list) -> dict:
    return {"status": status_code, "code": code, "message": message, "parameters": render_parameters(parameters)}


class ContactBulkView(ApiView):
    @extend_schema(
        summary="Bulk upsert of up to 1,000 contacts by match key",
        description='`{"contacts": [{match_key, match_key_type, source?, first_name?, last_name?, email?, '
        "mobile_phone?, birth_date?, external_ids?, consents?, attributes?}]}`. Each row is looked up by its "
        "match key: found → updated like PATCH /contacts/{id}; not found → created like POST /contacts, "
        "with the match key as one of its identifiers (an `external_id` key becomes a permanent external "
        "id, in `source`). Rows are applied in order, each on its own: one bad row never fails the others. "
        "Answers 200 with one result per row: `{index, status: created|updated|error, contact_id?, "
        "error?: {status, code, message, parameters}}`; a row whose identifiers belong to another contact "
        "gets a 409-status error (`DUPLICATE_IDENTIFIER`), a member number that matches nobody 404 "
        "(member numbers are assigned here). More than 1,000 rows: 400 LIMIT_EXCEEDED naming `contacts`. "
        "Send an `Idempotency-Key` to make a retry safe.",
        request=BulkContactsInputSerializer,
        responses={200: BulkContactsResultSerializer},
        tags=["contacts"],
    )
    @idempotent
    def post(self, request):
        rows = request.data.get("contacts") if isinstance(request.data, dict) else None
        if isinstance(rows, list) and len(rows) > contact_services.BULK_MAX_ROWS:
            raise LimitExceeded(
                f"At most {contact_services.BULK_MAX_ROWS} contacts per request; split the batch.",
                parameters=[LimitExceeded.parameter("contacts", limit=contact_services.BULK_MAX_ROWS, given=len(rows))],
            )
        rows = BulkContactsInputSerializer.validated(request.data)["contacts"]
        results: dict[int, dict] = {}
        valid_rows = []
        # One serializer for every row: building its fields per row would cost more than the writes.
        row_serializer = BulkContactRowSerializer()
        for index, row in enumerate(rows):
            try:
                data = bulk_contact_row_validated(row_serializer, row)
            except DRFValidationError as error:
                parameters = flatten_validation_detail(error.detail)
                message = "; ".join(f"{entry['name']}: {entry['message']}" for entry in parameters)
                results[index] = {
                    "index": index,
                    "status": "error",
                    "error": _row_error(400, "VALIDATION_ERROR", message, parameters),
                }
                continue
            valid_rows.append((index, dict(data)))
        for outcome in services.contact_bulk_upsert(livemode=self.livemode, rows=valid_rows):
            result = {"index": outcome.index, "status": outcome.status}
            if outcome.contact_id is not None:
                result["contact_id"] = str(outcome.contact_id)
            if outcome.error is not None:
                result["error"] = _row_error(
                    STATUS_BY_KIND.get(outcome.error.kind, 409),
                    outcome.error.code,
                    outcome.error.message,
                    outcome.error.parameters,
                )
            results[outcome.index] = result
        return Response({"results": [results[index] for index in range(len(rows))]})


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

    @extend_schema(
        summary="Erase a contact (GDPR)",
        description="Removes the contact's personal data and identifiers (names, birth date, email, phone, "
        "attributes, consents, external ids; the member number becomes an unusable `erased-…` tombstone) "
        "and sets status `erased`. The ledger, balances, transactions and orders are kept, pointing at the "
        "anonymous contact, so reports still add up; open offer locks are released; a `contact.erased` "
        "event is emitted. Idempotent: erasing an erased contact answers the same 200 again.",
        request=None,
        responses={200: ContactErasedSerializer},
        tags=["contacts"],
    )
    def delete(self, request, pk):
        contact = selectors.contact_get(livemode=self.livemode, contact_id=pk, with_identifiers=False)
        contact = services.contact_erase(contact=contact, erased_by=f"api-key:{request.auth.prefix}")
        return Response(ContactErasedSerializer(contact).data)


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
