"""Reading an incident's contact progress: the dashboard figures, what blocks resolving,
and the unconfirmed deliveries (sent, with no word from the ESP since the window)."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from incidents import selectors_contact as selectors
from incidents.access import HasPerms, get_incident_for, require
from incidents.api.helpers import REFERENCE, CursorById
from incidents.api_common import ApiView, error_responses
from incidents.dashboard import dashboard_for

VIEW_PEOPLE = "incidents.view_affectedperson"
VIEW_DELIVERY = "campaigns.view_delivery"


def _counts(help_text: str):
    return serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text=help_text
    )


class FunnelSerializer(serializers.Serializer):
    affected = serializers.IntegerField(help_text="Active people on the list.")
    sent = serializers.IntegerField(help_text="People whose first apology the ESP accepted.")
    delivered = serializers.IntegerField(help_text="People whose first apology was delivered.")
    contacted = serializers.IntegerField(help_text="People contacted, by email or otherwise.")

    class Meta:
        ref_name = "DashboardFunnel"


class SegmentCountsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    people = serializers.IntegerField()
    by_status = _counts("People per contact status.")

    class Meta:
        ref_name = "DashboardSegment"


class TimeToContactSerializer(serializers.Serializer):
    contacted = serializers.IntegerField()
    since = serializers.DateTimeField(help_text="Measured from here: the incident's opening.")
    p50 = serializers.IntegerField(allow_null=True, help_text="Seconds.")
    p90 = serializers.IntegerField(allow_null=True, help_text="Seconds.")
    p99 = serializers.IntegerField(allow_null=True, help_text="Seconds.")

    class Meta:
        ref_name = "DashboardTimeToContact"


@extend_schema_field(OpenApiTypes.OBJECT)
class ChartField(serializers.JSONField):
    pass


class DashboardOutputSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField(allow_null=True, help_text="When these figures were counted.")
    refreshing = serializers.BooleanField(help_text="Newer figures are being counted.")
    people = serializers.IntegerField(required=False)
    removed = serializers.IntegerField(required=False)
    by_status = _counts("Active people per contact status.")
    methods = _counts("Contacted people per method (email, phone, letter, ticket, in_person).")
    unreachable_unassigned = serializers.IntegerField(required=False)
    segments = SegmentCountsSerializer(many=True, required=False)
    funnel = FunnelSerializer(required=False)
    deliveries = _counts("Deliveries per status, copies sent again included.")
    sent_again = serializers.IntegerField(required=False)
    events = _counts("ESP events per type.")
    unconfirmed = serializers.IntegerField(required=False)
    unconfirmed_after_minutes = serializers.IntegerField(required=False)
    time_to_contact = TimeToContactSerializer(required=False)
    chart = ChartField(
        required=False,
        help_text="{unit, step (seconds), buckets: [{t, sent, delivered, failed, events}]}.",
    )

    class Meta:
        ref_name = "Dashboard"


class DashboardApi(ApiView):
    """The incident's dashboard figures, from its snapshot."""

    permission_classes = [HasPerms]
    read_perm = VIEW_PEOPLE
    write_perm = None

    @extend_schema(
        operation_id="dashboard_retrieve",
        summary="Get an incident's dashboard figures",
        description="Counts per contact status and segment, the funnel, deliveries and ESP "
        "events per state, unconfirmed deliveries, time-to-contact percentiles and a time "
        "series. Read from a snapshot at most `DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS` (5) old "
        "when possible; `as_of` says when it was counted. While a large incident's first "
        "count runs, only `as_of` (null) and `refreshing` are given.",
        tags=["contact"],
        parameters=[REFERENCE],
        responses={200: DashboardOutputSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        board = dashboard_for(incident=incident)
        payload = {**board.data, "as_of": board.as_of, "refreshing": board.refreshing}
        return Response(DashboardOutputSerializer(payload).data)


class BlockerSerializer(serializers.Serializer):
    status = serializers.CharField()
    label = serializers.CharField()
    people = serializers.IntegerField()
    url = serializers.CharField(help_text="The page listing them.")
    api_url = serializers.CharField(help_text="The API list of them.")

    class Meta:
        ref_name = "CompletionBlocker"


class CompletionApi(ApiView):
    """Whether the incident may be resolved, and who blocks it."""

    permission_classes = [HasPerms]
    read_perm = VIEW_PEOPLE
    write_perm = None

    class OutputSerializer(serializers.Serializer):
        complete = serializers.BooleanField(
            help_text="Every active person is contacted or waived: resolving is allowed."
        )
        blocking = BlockerSerializer(many=True)

        class Meta:
            ref_name = "Completion"

    @extend_schema(
        operation_id="completion_retrieve",
        summary="What blocks resolving an incident",
        description="Counted exactly, now: the active people (not removed) who are pending "
        "or unreachable, per status, each with a link to the list of them. Resolving is "
        "refused with 409 `contact_incomplete` while `blocking` is not empty.",
        tags=["contact"],
        parameters=[REFERENCE],
        responses={200: OutputSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        blockers = selectors.completion_blockers(incident=incident)
        rows = [
            {
                "status": b.status,
                "label": b.label,
                "people": b.people,
                "url": request.build_absolute_uri(b.url),
                "api_url": request.build_absolute_uri(b.api_url),
            }
            for b in blockers
        ]
        return Response(self.OutputSerializer({"complete": not rows, "blocking": rows}).data)


class UnconfirmedDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    person = serializers.IntegerField(source="person_id")
    address = serializers.CharField()
    locale = serializers.CharField()
    segment = serializers.CharField(source="person.segment.name")
    sent_at = serializers.DateTimeField()
    esp_message_id = serializers.CharField()
    contact_status = serializers.CharField(source="person.contact_status")

    class Meta:
        ref_name = "UnconfirmedDelivery"


class UnconfirmedApi(ApiView):
    """Deliveries sent longer ago than the window with no ESP event since."""

    permission_classes = [HasPerms]
    read_perm = VIEW_DELIVERY
    write_perm = None
    pagination_class = CursorById

    @extend_schema(
        operation_id="unconfirmed_list",
        summary="List unconfirmed deliveries",
        description="Still `sent` more than `RECONCILE_UNCONFIRMED_AFTER_MINUTES` "
        f"({settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES}) minutes after they were handed "
        "to the ESP: no delivered, deferred, bounce, rejection or complaint since. In id "
        "order, with cursor pagination. Needs incidents.view_affectedperson too (addresses).",
        tags=["contact"],
        parameters=[REFERENCE],
        responses={200: UnconfirmedDeliverySerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        require(request.user, VIEW_PEOPLE)
        deliveries = selectors.unconfirmed_deliveries(incident=incident)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        rows = selectors.with_people(page)  # joined after paging: see the selector
        return paginator.get_paginated_response(UnconfirmedDeliverySerializer(rows, many=True).data)
