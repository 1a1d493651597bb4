"""Sending through the API: launch a campaign, follow it, control it, decide on uncertain deliveries.

Thin views over campaigns.services and campaigns.selectors (docs/sending.md): each
parses its input, calls one service or selector and renders the campaign or delivery.
A campaign is addressed by its id (/api/campaigns/{id}/), a delivery by its id; both go
through access.get_incident_for, the one access door, with the view's permission.

Refusals a client can act on are 409s with their own code (docs/api.md):
`not_latest`, `not_approved`, `campaign_unfinished`, `already_contacted`,
`nobody_to_send`, `illegal_transition`.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.api.common import VIEW_PEOPLE, SegmentRefSerializer, invalid
from campaigns.models import Campaign, Delivery, IllegalTransition, MessageVersion
from campaigns.models.sending import UNFINISHED, CampaignStatus, DeliveryStatus
from campaigns.services.sending import RESOLVE_DECISIONS
from incidents.access import HasPerms, get_incident_for, require
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE, CursorById, id_parameter
from incidents.api_common import ApiView, Conflict, Pagination, error_responses
from incidents.models import AffectedPerson, Segment

VIEW_CAMPAIGN = "campaigns.view_campaign"
VIEW_DELIVERY = "campaigns.view_delivery"
LAUNCH = "campaigns.launch_campaign"
CONTROL = "campaigns.control_campaign"
RESOLVE = "campaigns.resolve_delivery"

CAMPAIGN_ID = id_parameter("campaign")
DELIVERY_ID = id_parameter("delivery")

_INT_MAX = 2**31 - 1  # the columns' bound (PositiveIntegerField)


# --- Access ---------------------------------------------------------------------------


def _campaigns() -> QuerySet[Campaign]:
    """With what the output shows of each campaign."""
    return Campaign.objects.select_related(
        "incident", "segment", "version", "created_by", "launched_by"
    )


def campaign_for(user, pk: int, perm: str) -> Campaign:
    """Campaign `pk`, if `user` holds `perm` on its incident (the one access door); 404 if unknown."""
    campaign = get_object_or_404(_campaigns(), pk=pk)
    get_incident_for(user, campaign.incident.reference, perm)
    return campaign


def delivery_for(user, pk: int, perm: str) -> Delivery:
    delivery = get_object_or_404(
        Delivery.objects.select_related("campaign__incident", "incident"), pk=pk
    )
    get_incident_for(user, delivery.incident.reference, perm)
    return delivery


@dataclass(frozen=True)
class _Stats:
    """What the API shows of a campaign's progress."""

    counts: dict[str, int]
    total: int
    progress: float
    rate: float
    eta_seconds: int | None
    eta_basis: str


def _with_progress(campaign: Campaign) -> Campaign:
    p = selectors.campaign_progress(campaign=campaign)
    eta = 0 if p.pending == 0 else None if p.eta_seconds is None else math.ceil(p.eta_seconds)
    campaign.stats = _Stats(
        counts=p.counts,
        total=p.total,
        progress=round(p.done / p.total, 4) if p.total else 0.0,
        rate=round(p.rate, 2),
        eta_seconds=eta,
        eta_basis=p.eta_basis,
    )
    return campaign


def _fresh(campaign: Campaign) -> Campaign:
    """The campaign as the service left it, with its progress."""
    return _with_progress(_campaigns().get(pk=campaign.pk))


# --- Refusals with a code ---------------------------------------------------------------
# The sending services refuse with a plain ValidationError. A refusal that depends on the
# state (not on the input) is a 409 with a code a client can branch on. Until the services
# name the codes themselves (exc.code, honoured here), the code is read from the state that
# made the service refuse; the service stays the only one to decide.

REFUSAL_CODES = (
    "not_latest",
    "not_approved",
    "campaign_unfinished",
    "already_contacted",
    "nobody_to_send",
    "illegal_transition",
)


@contextmanager
def _refusals(name_it):
    try:
        yield
    except IllegalTransition as exc:
        raise Conflict(" ".join(exc.messages), code="illegal_transition") from None
    except DjangoValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise  # a field of the request: 400 validation_failed
        code = getattr(exc, "code", None)
        code = code if code in REFUSAL_CODES else name_it()
        if code is None:
            raise
        raise Conflict(" ".join(exc.messages), code=code) from None


def _not_sendable(version: MessageVersion) -> str | None:
    version = MessageVersion.objects.select_related("message").get(pk=version.pk)
    if version.number != version.message.version_count:
        return "not_latest"
    if not selectors.version_is_approved(version):
        return "not_approved"
    return None


def _launch_refusal(segment: Segment, version: MessageVersion, send_again: bool):
    def name_it() -> str | None:
        code = _not_sendable(version)
        if code:
            return code
        if Campaign.objects.filter(segment=segment, status__in=UNFINISHED).exists():
            return "campaign_unfinished"
        active = AffectedPerson.objects.filter(segment=segment, removed_at=None)
        if not active.exists():
            return "nobody_to_send"
        contacted = Delivery.objects.filter(
            incident_id=segment.incident_id, person__in=active, resend=False
        )
        if not send_again and contacted.exists():
            return "already_contacted"
        return None

    return name_it


def _campaign_refusal(campaign: Campaign, *, allowed_from: tuple[str, ...]):
    """For resume and top-up: a campaign in the wrong status, or whose approval no longer holds."""

    def name_it() -> str | None:
        fresh = _campaigns().get(pk=campaign.pk)
        if fresh.status not in allowed_from:
            return "illegal_transition"
        code = _not_sendable(fresh.version)
        if code:
            return code
        if fresh.version.content_hash != fresh.content_hash:
            return "not_approved"
        return None

    return name_it


def _resolve_refusal(delivery: Delivery, decision: str):
    def name_it() -> str | None:
        fresh = Delivery.objects.select_related("campaign").get(pk=delivery.pk)
        if fresh.status != DeliveryStatus.UNCERTAIN:
            return "illegal_transition"
        if decision == "resend":
            return _campaign_refusal(
                fresh.campaign,
                allowed_from=(
                    CampaignStatus.RUNNING,
                    CampaignStatus.PAUSED,
                    CampaignStatus.COMPLETED,
                ),
            )()
        return None

    return name_it


# --- Output ---------------------------------------------------------------------------

DeliveryCountsSerializer = type(
    "DeliveryCountsSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "Deliveries per status; every status is present, 0 when none.",
        **{
            value: serializers.IntegerField(help_text=label)
            for value, label in DeliveryStatus.choices
        },
        "Meta": type("Meta", (), {"ref_name": "DeliveryCounts"}),
    },
)


class CampaignVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    url = serializers.HyperlinkedIdentityField(view_name="api-version-detail")

    class Meta:
        ref_name = "CampaignVersionRef"


class CampaignOutputSerializer(serializers.Serializer):
    """One campaign: what goes to whom, its settings, its control state and its progress."""

    id = serializers.IntegerField()
    url = serializers.HyperlinkedIdentityField(view_name="api-campaign-detail")
    incident = serializers.CharField(source="incident.reference")
    segment = SegmentRefSerializer()
    version = CampaignVersionRefSerializer()
    content_hash = serializers.CharField(
        help_text="The version's hash at launch; top-up and resume need it still approved."
    )
    status = serializers.ChoiceField(
        choices=CampaignStatus.choices,
        help_text="draft → running ⇄ paused; running → completed; unfinished → cancelled; "
        "completed → running again after a top-up or a resend.",
    )
    paused_reason = serializers.CharField(help_text="Empty unless paused.")
    rate_limit = serializers.IntegerField(help_text="Messages per second, all workers together.")
    batch_size = serializers.IntegerField(help_text="Deliveries per job.")
    mailer = serializers.CharField(help_text="The MAILERS alias it sends through.")
    send_again = serializers.BooleanField(
        source="is_resend", help_text="Sent again to people who already had the apology."
    )
    send_again_reason = serializers.CharField(source="resend_reason")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    launched_by = serializers.CharField(source="launched_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    launched_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = DeliveryCountsSerializer(source="stats.counts")
    total = serializers.IntegerField(source="stats.total", help_text="Deliveries.")
    progress = serializers.FloatField(
        source="stats.progress",
        help_text="0–1: the share of deliveries no longer queued or sending.",
    )
    rate = serializers.FloatField(
        source="stats.rate",
        help_text="Deliveries the ESP took per second over the last minute (or since launch).",
    )
    eta_seconds = serializers.IntegerField(
        source="stats.eta_seconds",
        allow_null=True,
        help_text="Seconds until nothing is queued or sending; 0 when nothing is; null while "
        "not running (paused, cancelled).",
    )
    eta_basis = serializers.CharField(
        source="stats.eta_basis",
        help_text="`rate`: at the current rate; `limit`: at the rate limit, as nothing was "
        "sent in the last minute; empty without an estimate.",
    )
    deliveries = serializers.HyperlinkedIdentityField(
        view_name="api-campaign-deliveries", help_text="The campaign's deliveries."
    )

    class Meta:
        ref_name = "Campaign"


class DeliveryOutputSerializer(serializers.Serializer):
    """One person's copy. `address` and `verification_code` only for roles that may see people."""

    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    person = serializers.IntegerField(source="person_id", help_text="The affected person's id.")
    address = serializers.CharField(
        allow_null=True,
        help_text="As the person gave it. Null unless the role may see people "
        "(incidents.view_affectedperson).",
    )
    locale = serializers.CharField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField(help_text="ESP calls made.")
    esp_message_id = serializers.CharField(help_text="Empty until the ESP took it.")
    error = serializers.CharField(help_text="The ESP's reason, or ours.")
    sent_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    sent_again = serializers.BooleanField(
        source="resend", help_text="Part of a send-again campaign or a resend decision."
    )
    verification_code = serializers.CharField(
        allow_null=True,
        help_text="The code in the person's apology. Null unless the role may see people.",
    )

    class Meta:
        ref_name = "Delivery"

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_people"):
            data["address"] = data["verification_code"] = None
        return data


def _campaign_data(request, campaign: Campaign) -> dict:
    return CampaignOutputSerializer(campaign, context={"request": request}).data


# --- Campaigns ------------------------------------------------------------------------


class CampaignListApi(ApiView):
    """An incident's campaigns, newest first; launch one."""

    permission_classes = [HasPerms]
    read_perm = VIEW_CAMPAIGN
    write_perm = LAUNCH
    pagination_class = Pagination
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        segment = serializers.IntegerField(min_value=1, help_text="The segment's id.")
        version = serializers.IntegerField(
            min_value=1, help_text="The id of the segment's latest, approved version."
        )
        rate_limit = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=_INT_MAX,
            help_text="Messages per second; default SEND_RATE_LIMIT.",
        )
        batch_size = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=_INT_MAX,
            help_text="Deliveries per job; default SEND_BATCH_SIZE.",
        )
        mailer = serializers.CharField(
            required=False, default="default", max_length=50, help_text="A MAILERS alias."
        )
        send_again_reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=5000,
            help_text="Send again to people who already have the apology for this incident, "
            "and why. Without it they are skipped.",
        )

        class Meta:
            ref_name = "CampaignLaunchInput"

    @extend_schema(
        operation_id="campaigns_list",
        summary="List an incident's campaigns",
        description="Newest first, each with its status and deliveries per status.",
        tags=["sending"],
        parameters=[REFERENCE],
        responses={200: CampaignOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.campaign_list(incident=incident).select_related("incident", "created_by"),
            request,
            view=self,
        )
        data = CampaignOutputSerializer(
            [_with_progress(c) for c in page], many=True, context={"request": request}
        ).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="campaigns_launch",
        summary="Launch a campaign",
        description="Sends the segment's latest, approved version to every active person of "
        "the segment who has no apology for this incident yet (with `send_again_reason`, to "
        "them too). One delivery per person; suppressed people are recorded and skipped; "
        "batches go to the send queue. Refused with 409: `not_latest`, `not_approved` (not "
        "approved, or its text no longer matches the approval), `campaign_unfinished`, "
        "`already_contacted` (everyone has it: give `send_again_reason`), `nobody_to_send`. "
        "Nothing is created when refused. Audited (`campaign.launched`).",
        tags=["sending"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={201: CampaignOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        segment = Segment.objects.filter(incident=incident, pk=values["segment"]).first()
        if segment is None:
            raise invalid("segment", f"{incident.reference} has no segment {values['segment']}.")
        version = (
            MessageVersion.objects.select_related("message")
            .filter(message__segment=segment, pk=values["version"])
            .first()
        )
        if version is None:
            raise invalid(
                "version", f"{values['version']} is not a version of “{segment}”'s apology."
            )
        reason = values["send_again_reason"].strip()
        with _refusals(_launch_refusal(segment, version, bool(reason))):
            campaign = services.campaign_launch(
                version=version,
                segment=segment,
                by=Actor.from_request(request),
                rate_limit=values.get("rate_limit"),
                batch_size=values.get("batch_size"),
                mailer=values["mailer"],
                send_again=bool(reason),
                resend_reason=reason,
            )
        data = _campaign_data(request, _fresh(campaign))
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})


class CampaignDetailApi(ApiView):
    """One campaign with its settings, control state and progress."""

    permission_classes = [HasPerms]
    read_perm = VIEW_CAMPAIGN
    write_perm = None  # changed only through its actions

    @extend_schema(
        operation_id="campaigns_retrieve",
        summary="Get a campaign",
        description="Its settings, status (`paused_reason` when paused), deliveries per "
        "status, `progress` (0–1), `rate` over the last minute and `eta_seconds`. Poll it "
        "to follow a send.",
        tags=["sending"],
        parameters=[CAMPAIGN_ID],
        responses={200: CampaignOutputSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.read_perm)
        return Response(_campaign_data(request, _with_progress(campaign)))


class CampaignPauseApi(ApiView):
    """Stop sending within seconds; resume later."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = CONTROL

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=5000,
            help_text="Shown as `paused_reason`; default “Paused by <user>.”",
        )

        class Meta:
            ref_name = "CampaignPauseInput"

    @extend_schema(
        operation_id="campaigns_pause",
        summary="Pause a campaign",
        description="Running → paused. Workers stop within seconds; messages already handed "
        "to the ESP finish, the rest stay queued. Only a running campaign can be paused "
        "(409 `illegal_transition`). Audited (`campaign.paused`).",
        tags=["sending"],
        parameters=[CAMPAIGN_ID],
        request=InputSerializer,
        responses={200: CampaignOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with _refusals(lambda: None):
            campaign = services.campaign_pause(
                campaign=campaign,
                by=Actor.from_request(request),
                reason=serializer.validated_data["reason"],
            )
        return Response(_campaign_data(request, _fresh(campaign)))


class CampaignResumeApi(ApiView):
    """Send what is left: every delivery still queued."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = CONTROL

    @extend_schema(
        operation_id="campaigns_resume",
        summary="Resume a campaign",
        description="Paused → running. There is no position to continue from: each "
        "delivery's status says what is left, so nobody gets a second copy. Refused with 409: "
        "`illegal_transition` (not paused), `not_latest` or `not_approved` (the approval no "
        "longer holds: cancel, and launch the new version). Audited (`campaign.resumed`).",
        tags=["sending"],
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: CampaignOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.write_perm)
        with _refusals(_campaign_refusal(campaign, allowed_from=(CampaignStatus.PAUSED,))):
            campaign = services.campaign_resume(campaign=campaign, by=Actor.from_request(request))
        return Response(_campaign_data(request, _fresh(campaign)))


class CampaignCancelApi(ApiView):
    """Stop for good."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = CONTROL

    @extend_schema(
        operation_id="campaigns_cancel",
        summary="Cancel a campaign",
        description="Any unfinished campaign → cancelled; its queued deliveries become "
        "`cancelled`, messages in flight finish. A finished one is a 409 "
        "`illegal_transition`. Audited (`campaign.cancelled`).",
        tags=["sending"],
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: CampaignOutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.write_perm)
        with _refusals(lambda: None):
            campaign = services.campaign_cancel(campaign=campaign, by=Actor.from_request(request))
        return Response(_campaign_data(request, _fresh(campaign)))


class CampaignTopUpApi(ApiView):
    """Send to people added to the segment since launch."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = LAUNCH

    class OutputSerializer(serializers.Serializer):
        added = serializers.IntegerField(help_text="Deliveries added (0: nobody new).")
        campaign = CampaignOutputSerializer()

        class Meta:
            ref_name = "CampaignTopUp"

    @extend_schema(
        operation_id="campaigns_top_up",
        summary="Top up a campaign",
        description="Deliveries for people added to the segment since launch who have no "
        "apology for this incident yet, under the same approval while the text is "
        "unchanged. A completed campaign runs again. Refused with 409: "
        "`illegal_transition` (cancelled), `not_latest` or `not_approved`. Audited "
        "(`campaign.topped_up`).",
        tags=["sending"],
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: OutputSerializer, **error_responses(404, 409)},
    )
    def post(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.write_perm)
        allowed = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.COMPLETED)
        with _refusals(_campaign_refusal(campaign, allowed_from=allowed)):
            added = services.campaign_top_up(campaign=campaign, by=Actor.from_request(request))
        data = {"added": added, "campaign": _fresh(campaign)}
        return Response(self.OutputSerializer(data, context={"request": request}).data)


# --- Deliveries -----------------------------------------------------------------------


class CampaignDeliveriesApi(ApiView):
    """A campaign's deliveries in id order, by cursor."""

    permission_classes = [HasPerms]
    read_perm = VIEW_DELIVERY
    write_perm = None
    pagination_class = CursorById

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
        search = serializers.CharField(
            required=False,
            max_length=320,
            help_text="Part of the address, or a whole verification code; needs "
            "incidents.view_affectedperson.",
        )

    @extend_schema(
        operation_id="campaigns_deliveries",
        summary="List a campaign's deliveries",
        description="One per person, in id order, with cursor pagination: follow `next`. "
        "Filter by `status` (e.g. `uncertain`, `failed`) or `search` an address or a "
        "verification code (needs incidents.view_affectedperson). "
        "`address` and `verification_code` are null unless the role may see people "
        "(incidents.view_affectedperson).",
        tags=["sending"],
        parameters=[CAMPAIGN_ID, FilterSerializer],
        responses={200: DeliveryOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request, pk: int):
        campaign = campaign_for(request.user, pk, self.read_perm)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        if values.get("search"):
            require(request.user, VIEW_PEOPLE)
        deliveries = selectors.delivery_list(
            campaign=campaign, status=values.get("status", ""), search=values.get("search", "")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        context = {"request": request, "show_people": request.user.has_perm(VIEW_PEOPLE)}
        return paginator.get_paginated_response(
            DeliveryOutputSerializer(page, many=True, context=context).data
        )


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(resend|mark_sent)$",
        "description": "`resend`: back to the queue, the person may get a second copy; "
        "`mark_sent`: count it as sent.",
    }
)
class DecisionField(serializers.ChoiceField):
    """A pattern, not an enum, in the schema: a second `decision` enum would rename Approval's."""


class DeliveryResolveApi(ApiView):
    """A person decides on a delivery nobody knows was sent."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = RESOLVE

    class InputSerializer(serializers.Serializer):
        decision = DecisionField(choices=RESOLVE_DECISIONS)
        # Blank is the service's to refuse, with its message.
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=5000,
            help_text="Required: why, for the audit trail.",
        )

        class Meta:
            ref_name = "DeliveryResolveInput"

    @extend_schema(
        operation_id="deliveries_resolve",
        summary="Decide on an uncertain delivery",
        description="An `uncertain` delivery may or may not have reached the ESP. `resend` "
        "puts it back in the queue (a completed campaign runs again), `mark_sent` counts it "
        "as sent. Needs a `reason` (400). Refused with 409: `illegal_transition` (not "
        "uncertain, or resend in a cancelled campaign), `not_latest` or `not_approved` "
        "(resend after the text changed). Audited (`delivery.uncertain_resolved`).",
        tags=["sending"],
        parameters=[DELIVERY_ID],
        request=InputSerializer,
        responses={200: DeliveryOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, pk: int):
        delivery = delivery_for(request.user, pk, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        with _refusals(_resolve_refusal(delivery, values["decision"])):
            delivery = services.delivery_resolve_uncertain(
                delivery=delivery,
                decision=values["decision"],
                reason=values["reason"],
                by=Actor.from_request(request),
            )
        context = {"request": request, "show_people": request.user.has_perm(VIEW_PEOPLE)}
        return Response(DeliveryOutputSerializer(delivery, context=context).data)
