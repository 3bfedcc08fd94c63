import io

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from core.api.idempotency import idempotent
from core.api.views import ApiView, get_in_mode_or_404
from core.baskets import parse_basket_lines, parse_money
from core.exceptions import Conflict, ValidationError
from core.money import format_minor
from loyalty.models import LedgerEntry
from loyalty.selectors import contact_resolve
from offers.selectors import venue_resolve
from transactions.api.serializers import (
    ClaimInputSerializer,
    ProductSyncInputSerializer,
    PurchaseEnvelopeSerializer,
    ReturnEnvelopeSerializer,
    VoidInputSerializer,
    currency_of,
    fingerprint,
    parse_custom,
    parse_discounts,
    parse_payments,
    parse_returned_items,
)
from transactions.models import Claim, ProductSync, Transaction
from transactions.selectors import transaction_receipt_code
from transactions.services import claims, products, reversals
from transactions.services.intake import Purchase, transaction_intake

TAGS = ["transactions"]


def _amount(value, currency):
    return format_minor(value, currency) if value is not None else None


def transaction_data(txn: Transaction) -> dict:
    entries = (
        LedgerEntry.objects.filter(livemode=txn.livemode, source_id=txn.external_id, source_type__in=["transaction"])
        .select_related("account")
        .order_by("id")
    )
    awards, spends = [], []
    for entry in entries:
        money = entry.account.kind != "points"
        item = {
            "ledger_entry_id": entry.pk,
            "kind": entry.kind,
            "account": entry.account.kind,
            "amount": format_minor(entry.amount, entry.account.currency) if money else entry.amount,
            "currency": entry.account.currency or None,
        }
        (spends if entry.kind in ("spend", "payout") or (money and entry.amount < 0) else awards).append(item)
    return {
        "id": txn.external_id,
        "transaction_id": str(txn.pk),
        "livemode": txn.livemode,
        "status": txn.status,
        "contact_id": str(txn.contact_id) if txn.contact_id else None,
        "occurred_at": txn.occurred_at,
        "received_at": txn.received_at,
        "processed_at": txn.processed_at,
        "currency": txn.currency,
        "amount": _amount(txn.amount, txn.currency),
        "discount_total": _amount(txn.discount_total, txn.currency),
        "points_earned": txn.points_earned,
        "spend": {
            "requested": _amount(txn.spend_requested, txn.currency),
            "approved": _amount(txn.spend_approved, txn.currency),
            "reduction": txn.spend_reduction or None,
        },
        "awards": awards,
        "spends": spends,
        "failure_reason": txn.failure_reason or None,
    }


def _venue(livemode: bool, reference):
    """The purchase's venue; an unknown one is named as the purchase's field, `venue`."""
    try:
        return venue_resolve(livemode=livemode, reference=reference)
    except ValidationError as error:
        raise ValidationError.for_field("venue", error.message, value=str(reference)) from None


class TransactionCollectionView(ApiView):
    @extend_schema(
        summary="Send a purchase",
        description="Validated completely and stored durably, then answered 202 with status `queued`; points "
        "are worked out by a worker. Idempotent on `id` (same payload → the first answer; another payload → "
        "409 IDEMPOTENCY_MISMATCH). Discounts naming an issued offer redeem it, which needs a live lock by this "
        "transaction (else 409 and nothing is stored). A front-end spend is approved at once and the answer "
        "carries the amount to take off the bill. Limits: 1,000 items, 100 discounts, 100 payments, 1,000 "
        "custom elements; no negative amounts.",
        request=PurchaseEnvelopeSerializer,
        responses={202: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request):
        raw = request.data
        envelope = PurchaseEnvelopeSerializer.validated(
            {**raw, "items": [], "discounts": [], "payments": [], "custom": {}} if isinstance(raw, dict) else raw
        )
        currency = currency_of(raw)
        spend = envelope.get("spend")
        if spend and spend.get("amount") is not None:
            spend["amount"] = parse_money(spend["amount"], currency=currency, field="spend.amount")
            if spend["amount"] <= 0:
                raise ValidationError.for_field("spend.amount", "The spend amount must be positive.")
        purchase = Purchase(
            external_id=envelope["id"],
            fingerprint=fingerprint(raw),
            occurred_at=envelope["occurred_at"],
            currency=currency,
            lines=parse_basket_lines(raw.get("items"), currency=currency, field="items"),
            contact_reference=envelope.get("contact"),
            venue=_venue(self.livemode, raw.get("venue")),
            channel=envelope.get("channel") or "pos",
            receipt_number=envelope.get("receipt_number", ""),
            discounts=parse_discounts(raw.get("discounts"), currency),
            payments=parse_payments(raw.get("payments"), currency),
            tax_total=parse_money(raw.get("tax_total") or 0, currency=currency, field="tax_total"),
            spend=spend,
            custom=parse_custom(raw.get("custom")),
        )
        _, response, replayed = transaction_intake(livemode=self.livemode, purchase=purchase)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(response, status=status.HTTP_202_ACCEPTED, headers=headers)


class TransactionDetailView(ApiView):
    @extend_schema(summary="A purchase: status, awards and spends", responses={200: OpenApiTypes.OBJECT}, tags=TAGS)
    def get(self, request, external_id):
        txn = get_in_mode_or_404(Transaction.objects.filter(livemode=self.livemode), name="id", external_id=external_id)
        return Response(transaction_data(txn))


class TransactionVoidView(ApiView):
    @extend_schema(
        summary="Void a purchase",
        description="Every award and spend is reversed with compensating entries, pending pay-outs fail, "
        "redeemed offers are reinstated. Voiding again answers the same.",
        request=VoidInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request, external_id):
        data = VoidInputSerializer.validated(request.data or {})
        txn = get_in_mode_or_404(Transaction.objects.filter(livemode=self.livemode), name="id", external_id=external_id)
        txn = reversals.transaction_void(transaction=txn, reason=data.get("reason", ""))
        return Response(transaction_data(txn))


class ReturnView(ApiView):
    @extend_schema(
        summary="Return goods",
        description="Against an original purchase (`transaction_id` and the returned `items`: sku, quantity, "
        "line?) — points reversed in proportion, never more than was bought in total — or ad hoc (`contact`, "
        "`amount`, `currency`) — points at the base earning rate. Purchases older than 12 months keep their "
        "points. Idempotent on `id`.",
        request=ReturnEnvelopeSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def post(self, request):
        raw = request.data
        data = ReturnEnvelopeSerializer.validated({**raw, "items": None} if isinstance(raw, dict) else raw)
        contact = contact_resolve(livemode=self.livemode, reference=data["contact"]) if data.get("contact") else None
        original_id = data.get("transaction_id")
        currency = data.get("currency")
        if original_id:
            original = get_in_mode_or_404(
                Transaction.objects.filter(livemode=self.livemode), name="transaction_id", external_id=original_id
            )
            currency = original.currency
        elif not currency:
            raise ValidationError.for_field("currency", "An ad hoc return needs its currency.")
        items = parse_returned_items(raw.get("items"))
        amount = parse_money(data["amount"], currency=currency, field="amount") if data.get("amount") else None
        record, replayed = reversals.return_process(
            livemode=self.livemode,
            external_id=data["id"],
            fingerprint=fingerprint(raw),
            occurred_at=data.get("occurred_at") or timezone.now(),
            currency=currency,
            original_external_id=original_id,
            items=items,
            amount=amount,
            contact=contact,
        )
        return Response(record.response, status=200 if replayed else status.HTTP_201_CREATED)


class ProductSyncView(ApiView):
    @extend_schema(
        summary="Bulk create or update products (up to 10,000)",
        request=ProductSyncInputSerializer,
        responses={202: OpenApiTypes.OBJECT},
        tags=["catalogue"],
    )
    @idempotent
    def post(self, request):
        data = ProductSyncInputSerializer.validated(request.data)
        sync = products.product_sync_create(livemode=self.livemode, rows=data["products"])
        return Response(sync_data(sync), status=status.HTTP_202_ACCEPTED)


class ProductSyncDetailView(ApiView):
    @extend_schema(
        summary="Progress and per-row errors of a product sync",
        responses={200: OpenApiTypes.OBJECT},
        tags=["catalogue"],
    )
    def get(self, request, process_id):
        sync = get_in_mode_or_404(ProductSync.objects.filter(livemode=self.livemode), name="process_id", pk=process_id)
        return Response(sync_data(sync))


def sync_data(sync: ProductSync) -> dict:
    return {
        "process_id": str(sync.pk),
        "status": sync.status,
        "total": sync.total,
        "processed": sync.processed,
        "created": sync.created_count,
        "updated": sync.updated_count,
        "errors": sync.errors,
        "created_at": sync.created_at,
        "finished_at": sync.finished_at,
    }


# --- receipt codes and claims -------------------------------------------------------------------

RECEIPT_CODE_FORMATS = ("qr", "barcode")
RECEIPT_CODE_CONTENT_TYPES = {"svg": "image/svg+xml", "png": "image/png"}


class NoReceiptCode(Conflict):
    code = "NO_RECEIPT_CODE"
    default_message = "Only a purchase sent without a contact, with a venue and a receipt number, has a receipt code."


class ErrorsAsJsonNegotiation(BaseContentNegotiation):
    """`?format=` names the code (qr or barcode), not a renderer, and a till may ask for
    `Accept: image/*`: success is an image (a plain HttpResponse), errors are always the
    contract's JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def receipt_code_image(payload: str, *, code_format: str, extension: str) -> bytes:
    """A QR code (segno) or Code 128 barcode (python-barcode) of `payload`, as SVG or PNG."""
    buffer = io.BytesIO()
    if code_format == "qr":
        import segno

        qr_code = segno.make(payload, error="m", micro=False)
        if extension == "svg":
            qr_code.save(buffer, kind="svg", scale=4, xmldecl=False)
        else:
            qr_code.save(buffer, kind="png", scale=4)
        return buffer.getvalue()
    from barcode import Code128
    from barcode.writer import ImageWriter, SVGWriter

    writer = SVGWriter() if extension == "svg" else ImageWriter(format="PNG")
    Code128(payload, writer=writer).write(buffer)
    content = buffer.getvalue()
    # python-barcode writes an XML declaration and doctype; the <svg> element alone is the image.
    return content[content.index(b"<svg") :] if extension == "svg" else content


class TransactionReceiptCodeView(ApiView):
    content_negotiation_class = ErrorsAsJsonNegotiation

    @extend_schema(
        summary="The receipt code of a purchase, as an image for the till to print",
        description="`receipt-code.svg` or `receipt-code.png`; `?format=qr` (default: the QR payload "
        "`receipt_number;merchant_number;venue_number;amount_x100`) or `?format=barcode` (Code 128 of "
        "`merchant_number;receipt_number;amount_x100;venue_number`). Only a purchase sent without a contact, "
        "with a venue and a receipt number, has one (else 409 NO_RECEIPT_CODE). Errors are JSON.",
        parameters=[
            OpenApiParameter("format", str, enum=list(RECEIPT_CODE_FORMATS), default="qr"),
            OpenApiParameter("extension", str, OpenApiParameter.PATH, enum=list(RECEIPT_CODE_CONTENT_TYPES)),
        ],
        responses={(200, "image/svg+xml"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY},
        tags=TAGS,
    )
    def get(self, request, external_id, extension):
        code_format = request.query_params.get("format") or "qr"
        if code_format not in RECEIPT_CODE_FORMATS:
            raise ValidationError.for_field("format", "Either qr or barcode.", value=code_format)
        if extension not in RECEIPT_CODE_CONTENT_TYPES:
            raise ValidationError.for_field("extension", "Either .svg or .png.", value=extension)
        txn = get_in_mode_or_404(
            Transaction.objects.filter(livemode=self.livemode).select_related("venue__merchant"),
            name="id",
            external_id=external_id,
        )
        receipt_code = transaction_receipt_code(txn)
        if receipt_code is None:
            raise NoReceiptCode(parameters=[NoReceiptCode.parameter("id", value=external_id)])
        payload = receipt_code.qr if code_format == "qr" else receipt_code.barcode
        content = receipt_code_image(payload, code_format=code_format, extension=extension)
        return HttpResponse(content, content_type=RECEIPT_CODE_CONTENT_TYPES[extension])


def claim_data(claim: Claim) -> dict:
    txn = claim.transaction
    return {
        "id": str(claim.pk),
        "livemode": claim.livemode,
        "kind": claim.kind,
        "format": claim.code_format,
        "contact_id": str(claim.contact_id),
        "merchant_number": claim.merchant_number,
        "venue_number": claim.venue_number,
        "receipt_number": claim.receipt_number,
        "amount": format_minor(claim.amount, txn.currency),
        "currency": txn.currency,
        "transaction": {"id": txn.external_id, "transaction_id": str(txn.pk), "status": txn.status},
        "created_at": claim.created_at,
    }


class ClaimView(ApiView):
    @extend_schema(
        summary="A contact claims a receipt by its QR or barcode payload",
        description=(claims.__doc__ or "").split("Reading the payload.")[-1].strip(),
        request=ClaimInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = ClaimInputSerializer.validated(request.data)
        contact = contact_resolve(livemode=self.livemode, reference=data["contact"])
        claim = claims.claim_submit(livemode=self.livemode, contact=contact, code=data["code"])
        return Response(claim_data(claim), status=status.HTTP_201_CREATED)
