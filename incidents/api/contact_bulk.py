"""Contact tracking for many people at once: assign, unassign, record, mark unreachable
(Support, Admin) or waive (Comms, Admin), for listed ids or for everyone a filter matches.
At most CONTACT_BULK_MAX people per request; more is refused whole (400 `too_many`).
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from incidents import selectors_contact as selectors
from incidents import services
from incidents.access import HasPerms, get_incident_for
from incidents.actors import Actor
from incidents.api.contact import (
    FOLLOW_UP,
    WAIVE,
    AssigneeField,
    ContactFilterSerializer,
    assignee_of,
)
from incidents.api.helpers import REFERENCE
from incidents.api_common import ApiView, error_responses
from incidents.models import AffectedPerson
from incidents.services.contact import MANUAL_METHODS

# --- Many people ------------------------------------------------------------------


class BulkSelectionSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=10_000,
        help_text="These people (ids of this incident's list)…",
    )
    filters = ContactFilterSerializer(
        required=False, help_text="…or everyone these filters match ({} for the whole list)."
    )

    class Meta:
        ref_name = "ContactBulkSelection"

    def validate(self, attrs):
        if ("ids" in attrs) == ("filters" in attrs):
            raise serializers.ValidationError("Give either `ids` or `filters`.")
        return attrs


class BulkResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Matched, but the action does not apply.")

    class Meta:
        ref_name = "ContactBulkResult"


def _selection(request, incident, values: dict):
    if "ids" in values:
        return AffectedPerson.objects.filter(incident=incident, pk__in=values["ids"]), "ids"
    filters = ContactFilterSerializer(data=request.data.get("filters") or {})
    filters.is_valid(raise_exception=True)
    criteria = filters.criteria()
    description = ", ".join(f"{k}={v}" for k, v in criteria.items() if v not in ("", None, False))
    people = selectors.contact_people(incident=incident, user=request.user, **criteria)
    return people, description or "everyone"


class ContactBulkApi(ApiView):
    """Assign, unassign, record a contact or mark unreachable, for many people at once."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = FOLLOW_UP
    parser_classes = [JSONParser]

    class InputSerializer(BulkSelectionSerializer):
        action = serializers.ChoiceField(choices=["assign", "unassign", "record", "unreachable"])
        assignee = AssigneeField(
            required=False, allow_null=True, help_text='For assign: "me" or a user id.'
        )
        method = serializers.ChoiceField(
            choices=[(m.value, m.label) for m in MANUAL_METHODS], required=False
        )
        contacted_at = serializers.DateTimeField(required=False, allow_null=True)
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

        class Meta:
            ref_name = "ContactBulkInput"

    @extend_schema(
        operation_id="contact_bulk",
        summary="Act on many people at once",
        description="At most `CONTACT_BULK_MAX` people (10,000) per request; more is refused "
        "whole with 400 `too_many`. People the action does not fit are skipped and counted. "
        "One ledger row per changed person, one audit entry (`contact.bulk_<action>`).",
        tags=["contact"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={200: BulkResultSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        people, description = _selection(request, incident, values)
        result = services.contact_bulk(
            incident=incident,
            people=people,
            action=values["action"],
            assignee=assignee_of(request, values.get("assignee")),
            method=values.get("method", ""),
            note=values["note"],
            contacted_at=values.get("contacted_at"),
            description=description,
            by=Actor.from_request(request),
        )
        return Response(BulkResultSerializer(result).data)


class ContactBulkWaiveApi(ApiView):
    """Waive many people at once, with one reason. Comms and Admin only."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = WAIVE
    parser_classes = [JSONParser]

    class InputSerializer(BulkSelectionSerializer):
        reason = serializers.CharField(max_length=2000)

        class Meta:
            ref_name = "ContactBulkWaiveInput"

    @extend_schema(
        operation_id="contact_bulk_waive",
        summary="Waive many people at once",
        description="Pending and unreachable people only (others are skipped); at most "
        "`CONTACT_BULK_MAX`. Audited (`contact.bulk_waive`) with the reason and the ids.",
        tags=["contact"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={200: BulkResultSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        people, description = _selection(request, incident, data.validated_data)
        result = services.contact_bulk(
            incident=incident,
            people=people,
            action="waive",
            note=data.validated_data["reason"],
            description=description,
            by=Actor.from_request(request),
        )
        return Response(BulkResultSerializer(result).data)
