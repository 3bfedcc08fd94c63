import uuid

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from campaigns import selectors
from campaigns.api.serializers import (
    MAX_AUDIENCE_MEMBERS,
    AudienceUploadInputSerializer,
    CampaignInputSerializer,
    CampaignListQuerySerializer,
    EventInputSerializer,
    ProgressQuerySerializer,
    SimulateInputSerializer,
    audience_csv,
    campaign_data,
    campaign_input_to_service,
    event_accepted_data,
    event_data,
    progress_data,
    simulation_data,
)
from campaigns.models import Campaign
from campaigns.services import definitions, events, simulation
from core.api.idempotency import REPLAY_HEADER, idempotent
from core.api.views import ApiView, ManagementApiView, get_in_mode_or_404
from core.exceptions import LimitExceeded, NotFound
from loyalty.models import Contact
from loyalty.selectors import contact_get, contact_resolve

MANAGEMENT_TAGS = ["management: campaigns"]
TAGS = ["campaigns"]


def campaigns_data(campaigns) -> list[dict]:
    campaigns = list(campaigns)
    totals = selectors.campaign_award_totals(campaigns)
    return [campaign_data(campaign, totals[campaign.pk]) for campaign in campaigns]


class CampaignCollectionView(ManagementApiView):
    lists_on_get = True
    queryset = Campaign.objects.none()  # for the schema only

    @extend_schema(
        summary="List campaigns, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=list(Campaign.Status.values)),
            OpenApiParameter("trigger", str, enum=list(Campaign.Trigger.values)),
        ],
        responses={200: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    def get(self, request):
        query = CampaignListQuerySerializer.validated(request.query_params.dict())
        campaigns = selectors.campaign_list(
            livemode=self.livemode, status=query.get("status"), trigger=query.get("trigger")
        )
        page = self.paginate_queryset(campaigns)
        return self.get_paginated_response(campaigns_data(page))

    @extend_schema(
        summary="Create a campaign",
        description="A draft unless `status` launches it (`active` or `scheduled`: the window decides which). "
        "Money fields (`min_spend`, `budget_money`, a spend goal's `goal_target`, outcomes' `cashback_amount` "
        "and `cashback_cap`) are decimal strings in the campaign's `currency`. At most 50 restrictions "
        "(400 LIMIT_EXCEEDED) and 20 outcomes; validation is the admin's.",
        request=CampaignInputSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    @idempotent
    def post(self, request):
        data = campaign_input_to_service(CampaignInputSerializer.validated(request.data))
        campaign = definitions.campaign_create(livemode=self.livemode, **data)
        campaign = selectors.campaign_list(livemode=self.livemode).get(pk=campaign.pk)
        return Response(campaigns_data([campaign])[0], status=status.HTTP_201_CREATED)


class CampaignManagementView(ManagementApiView):
    def get_object(self) -> Campaign:
        return get_in_mode_or_404(selectors.campaign_list(livemode=self.livemode), pk=self.kwargs["pk"])


class CampaignDetailView(CampaignManagementView):
    @extend_schema(summary="Get a campaign", responses={200: OpenApiTypes.OBJECT}, tags=MANAGEMENT_TAGS)
    def get(self, request, pk):
        return Response(campaigns_data([self.get_object()])[0])

    @extend_schema(
        summary="Update a campaign",
        description="Only the fields sent change; `restrictions`, `outcomes`, `venues` and `audience_tiers`, "
        "when sent, replace the lists. `status` moves the campaign along its transitions (409 CONFLICT when "
        "not allowed, e.g. from ended).",
        request=CampaignInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    def patch(self, request, pk):
        campaign = self.get_object()
        data = campaign_input_to_service(CampaignInputSerializer.validated(request.data, partial=True), campaign)
        campaign = definitions.campaign_update(campaign=campaign, **data)
        return Response(campaigns_data([selectors.campaign_list(livemode=self.livemode).get(pk=campaign.pk)])[0])


class CampaignSimulateView(CampaignManagementView):
    @extend_schema(
        summary="Simulate a campaign over the last days",
        description="Replays the period's processed purchases (or events, registrations, tier changes, "
        "birthdays) through the campaign's rules, keeping goals, per-contact limits and budgets: reach, cost "
        "and a per-day breakdown. Writes nothing and sends nothing. `days`: 1 to 365 (default 30).",
        request=SimulateInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    def post(self, request, pk):
        data = SimulateInputSerializer.validated(request.data or {})
        result = simulation.campaign_simulate(campaign=self.get_object(), days=data["days"])
        return Response(simulation_data(result))


class CampaignAudienceView(CampaignManagementView):
    @extend_schema(
        summary="Upload a list audience",
        description="For campaigns whose `audience` is `list`: member numbers, emails or mobile phones (at "
        "most 10,000 per request; more is 400 LIMIT_EXCEEDED), added to the list or, with `replace`, "
        "replacing it. Entries that match no active contact are reported by their index.",
        request=AudienceUploadInputSerializer,
        responses={200: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    @idempotent
    def post(self, request, pk):
        members = request.data.get("members") if isinstance(request.data, dict) else None
        if isinstance(members, list) and len(members) > MAX_AUDIENCE_MEMBERS:
            raise LimitExceeded(
                f"At most {MAX_AUDIENCE_MEMBERS} members per upload; got {len(members)}.",
                parameters=[LimitExceeded.parameter("members", limit=MAX_AUDIENCE_MEMBERS)],
            )
        data = AudienceUploadInputSerializer.validated(request.data)
        result = definitions.campaign_audience_upload(
            campaign=self.get_object(), content=audience_csv(data["members"]), replace=data["replace"]
        )
        # The upload numbers CSV lines; line 1 is the header, so member i is on line i + 2.
        unmatched = [{"index": entry["line"] - 2, "value": entry["value"]} for entry in result["unmatched"]]
        return Response(
            {
                "campaign_id": str(pk),
                "matched": result["matched"],
                "unmatched_count": result["unmatched_count"],
                "unmatched": unmatched,
                "members": result["members"],
            }
        )


class CampaignProgressView(CampaignManagementView):
    @extend_schema(
        summary="One contact's progress on the campaign's goal",
        description="Progress in the current goal period since the contact's last award, and the target "
        "(money for spend goals, counts for visits and quantity).",
        parameters=[OpenApiParameter("contact_id", str, required=True, description="The contact's id.")],
        responses={200: OpenApiTypes.OBJECT},
        tags=MANAGEMENT_TAGS,
    )
    def get(self, request, pk):
        campaign = self.get_object()
        query = ProgressQuerySerializer.validated(request.query_params.dict())
        contact = get_in_mode_or_404(
            Contact.objects.filter(livemode=self.livemode), name="contact_id", pk=query["contact_id"]
        )
        progress = selectors.goal_progress(campaign=campaign, contact_id=contact.pk, at=timezone.now())
        return Response({"contact_id": str(contact.pk), **progress_data(progress, campaign)})


class EventCollectionView(ApiView):
    @extend_schema(
        summary="Report a behaviour campaigns listen for",
        description="Stored and answered 202 with status `queued`; a worker fires the campaigns it meets. "
        "Idempotent on `id` (the same id and body → the first answer, with Idempotent-Replayed: true; the "
        "same id with another body → 409 IDEMPOTENCY_MISMATCH) and on the Idempotency-Key header.",
        request=EventInputSerializer,
        responses={202: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    @idempotent
    def post(self, request):
        data = EventInputSerializer.validated(request.data)
        contact = contact_resolve(livemode=self.livemode, reference=data["contact"])
        event, replayed = events.event_record(
            livemode=self.livemode,
            contact=contact,
            event_type=data["type"],
            occurred_at=data.get("occurred_at"),
            attributes=data.get("attributes"),
            external_id=data.get("id"),
        )
        headers = {REPLAY_HEADER: "true"} if replayed else {}
        return Response(event_accepted_data(event), status=status.HTTP_202_ACCEPTED, headers=headers)


class EventDetailView(ApiView):
    @extend_schema(
        summary="An event: status, awards and failure",
        description="By our `event_id` or by your `id`.",
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def get(self, request, event_id):
        event = selectors.event_find(livemode=self.livemode, reference=event_id)
        if event is None:
            raise NotFound(
                f"No event '{event_id}' in this mode.", parameters=[NotFound.parameter("id", value=event_id)]
            )
        return Response(event_data(event))


class ContactCampaignProgressView(ApiView):
    @extend_schema(
        summary="A contact's progress on every live campaign with a goal",
        responses={200: OpenApiTypes.OBJECT},
        tags=TAGS,
    )
    def get(self, request, pk):
        contact = contact_get(livemode=self.livemode, contact_id=pk, with_identifiers=False)
        progress = selectors.contact_goal_progress(livemode=self.livemode, contact_id=contact.pk, at=timezone.now())
        campaigns = Campaign.objects.in_bulk([entry["campaign_id"] for entry in progress])
        return Response(
            {
                "contact_id": str(contact.pk),
                "results": [progress_data(entry, campaigns[uuid.UUID(entry["campaign_id"])]) for entry in progress],
            }
        )
