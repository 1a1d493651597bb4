"""Contact tracking by people: the people by contact status (the follow-up queue), one
person's contact and ledger, recording a contact, marking unreachable, waiving,
assigning follow-ups, and the same for many people at once.

Support (record_contact) records and assigns; Comms and Admin (waive_contact)
waive; every role reads. Refusals carry the service's code (409
`unchanged`, `illegal_contact_transition`, `contact_done`, `person_removed`;
403 `waive_not_allowed`; 400 `too_many`).
"""

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from incidents import selectors_contact as selectors
from incidents import services
from incidents.access import HasPerms, get_incident_for
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE, CursorById, id_parameter
from incidents.api_common import ApiView, error_responses
from incidents.models import AffectedPerson, ContactStatus
from incidents.services.contact import MANUAL_METHODS

VIEW_PEOPLE = "incidents.view_affectedperson"
FOLLOW_UP = "incidents.record_contact"
WAIVE = "incidents.waive_contact"
PERSON_ID = id_parameter("affected person")
REASON_CODES = list(selectors.REASONS)


# --- Output ---------------------------------------------------------------------


class _SegmentRef(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()

    class Meta:
        ref_name = "ContactSegmentRef"


class ContactPersonOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    address = serializers.CharField()
    customer_id = serializers.CharField()
    locale = serializers.CharField()
    segment = _SegmentRef()
    contact_status = serializers.CharField(help_text=f"One of {', '.join(ContactStatus.values)}.")
    contact_method = serializers.CharField(help_text="How they were contacted; blank otherwise.")
    contacted_at = serializers.DateTimeField(allow_null=True)
    contact_note = serializers.CharField(help_text="The note, or the reason for a waiver.")
    contact_updated_at = serializers.DateTimeField(allow_null=True)
    followup_assignee = serializers.CharField(
        source="followup_assignee.username", allow_null=True, default=None
    )
    delivery_status = serializers.CharField(
        allow_null=True, help_text="Their latest delivery's status; null when none was sent."
    )
    reason = serializers.SerializerMethodField(
        help_text=f"Why they may need a follow-up: one of {', '.join(REASON_CODES)}, or blank."
    )
    removed_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "ContactPerson"

    def get_reason(self, person) -> str:
        return selectors.reason_of(person)


class ContactRecordOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    previous_status = serializers.CharField()
    status = serializers.CharField()
    method = serializers.CharField()
    note = serializers.CharField()
    contacted_at = serializers.DateTimeField(allow_null=True)
    delivery = serializers.IntegerField(source="delivery_id", allow_null=True)
    recorded_by = serializers.CharField(source="recorded_by_label")
    recorded_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ContactRecord"


class ContactPersonDetailSerializer(ContactPersonOutputSerializer):
    history = ContactRecordOutputSerializer(many=True, help_text="The ledger, oldest first.")

    class Meta:
        ref_name = "ContactPersonDetail"


def _person_data(incident, pk: int) -> dict:
    try:
        person = selectors.contact_person(incident=incident, person_id=pk)
    except AffectedPerson.DoesNotExist:
        raise Http404("No such person on this incident's list.") from None
    person.history = list(selectors.contact_history(person=person))
    return ContactPersonDetailSerializer(person).data


# --- Filters ---------------------------------------------------------------------


class ContactFilterSerializer(serializers.Serializer):
    # Plain text checked in validate_*: enums named "status"/"reason" collide in the schema.
    status = serializers.CharField(
        required=False,
        help_text=f"One of {', '.join(ContactStatus.values)}; leave out for every status.",
    )
    failed_pending = serializers.BooleanField(
        required=False,
        default=False,
        help_text="With status=unreachable: also pending people whose email failed.",
    )
    segment = serializers.IntegerField(required=False, min_value=1)
    assignee = serializers.RegexField(
        r"^(mine|none|\d+)$",
        required=False,
        help_text="mine, none (unassigned), or a user id.",
    )
    reason = serializers.CharField(
        required=False, help_text=f"Why they need a follow-up: one of {', '.join(REASON_CODES)}."
    )
    locale = serializers.CharField(required=False, max_length=16)
    search = serializers.CharField(
        required=False, max_length=320, help_text="Part of the address, or a customer id."
    )

    class Meta:
        ref_name = "ContactFilter"

    def validate_status(self, value: str) -> str:
        if value not in ContactStatus.values:
            raise serializers.ValidationError(f"Choose one of {', '.join(ContactStatus.values)}.")
        return value

    def validate_reason(self, value: str) -> str:
        if value not in REASON_CODES:
            raise serializers.ValidationError(f"Choose one of {', '.join(REASON_CODES)}.")
        return value

    def criteria(self) -> dict:
        v = self.validated_data
        return {
            "status": v.get("status", ""),
            "failed_pending": v.get("failed_pending", False),
            "segment_id": v.get("segment"),
            "assignee": v.get("assignee", ""),
            "reason": v.get("reason", ""),
            "locale": v.get("locale", ""),
            "search": v.get("search", ""),
        }


# --- Reading --------------------------------------------------------------------


class ContactPeopleApi(ApiView):
    """The incident's people by contact status: the follow-up queue is status=unreachable."""

    permission_classes = [HasPerms]
    read_perm = VIEW_PEOPLE
    write_perm = None
    pagination_class = CursorById

    @extend_schema(
        operation_id="contact_people_list",
        summary="List people by contact status",
        description="Active people (not removed) in id order, with cursor pagination: follow "
        "`next`. The follow-up queue is `status=unreachable` (add `failed_pending=true` for "
        "pending people whose email failed); `assignee=mine` for your own follow-ups.",
        tags=["contact"],
        parameters=[REFERENCE, ContactFilterSerializer],
        responses={200: ContactPersonOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        filters = ContactFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        people = selectors.contact_people(
            incident=incident, user=request.user, **filters.criteria()
        )
        return self.paginated_response(people, ContactPersonOutputSerializer)


class ContactPersonApi(ApiView):
    """One person's contact status and ledger."""

    permission_classes = [HasPerms]
    read_perm = VIEW_PEOPLE
    write_perm = None

    @extend_schema(
        operation_id="contact_person_retrieve",
        summary="Get a person's contact status and ledger",
        tags=["contact"],
        parameters=[REFERENCE, PERSON_ID],
        responses={200: ContactPersonDetailSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str, pk: int):
        incident = get_incident_for(request.user, reference, self.read_perm)
        return Response(_person_data(incident, pk))


# --- One person's contact ---------------------------------------------------------


class _PersonWriteApi(ApiView):
    permission_classes = [HasPerms]
    read_perm = None
    parser_classes = [JSONParser]

    def person(self, request, reference: str, pk: int):
        incident = get_incident_for(request.user, reference, self.write_perm)
        return incident, get_object_or_404(AffectedPerson, incident=incident, pk=pk)

    def input(self, request) -> dict:
        """The request body through this endpoint's InputSerializer; 400 when it is invalid."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def done(self, incident, pk: int):
        return Response(_person_data(incident, pk))


_WRITE_ERRORS = error_responses(400, 404, 409)


class ContactRecordApi(_PersonWriteApi):
    """Record that a person was reached another way."""

    write_perm = FOLLOW_UP

    class InputSerializer(serializers.Serializer):
        method = serializers.ChoiceField(choices=[(m.value, m.label) for m in MANUAL_METHODS])
        contacted_at = serializers.DateTimeField(
            required=False, allow_null=True, help_text="When; now if left out."
        )
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

        class Meta:
            ref_name = "ContactRecordInput"

    @extend_schema(
        operation_id="contact_record",
        summary="Record a contact by phone, letter, support ticket or in person",
        description="The person becomes `contacted` (from pending, unreachable or waived). "
        "Email contacts come from the ESP, not from here. Appends a ledger row and an audit "
        "entry (`contact.recorded`). Already contacted: 409 `unchanged`.",
        tags=["contact"],
        parameters=[REFERENCE, PERSON_ID],
        request=InputSerializer,
        responses={200: ContactPersonDetailSerializer, **_WRITE_ERRORS},
    )
    def post(self, request, reference: str, pk: int):
        incident, person = self.person(request, reference, pk)
        data = self.input(request)
        services.contact_record(person=person, by=Actor.from_request(request), **data)
        return self.done(incident, pk)


class ContactUnreachableApi(_PersonWriteApi):
    """Mark a pending person unreachable."""

    write_perm = FOLLOW_UP

    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

        class Meta:
            ref_name = "ContactUnreachableInput"

    @extend_schema(
        operation_id="contact_mark_unreachable",
        summary="Mark a person unreachable",
        description="Only a pending person; they join the follow-up queue. Audited "
        "(`contact.marked_unreachable`). A contact once recorded cannot be undone here (409).",
        tags=["contact"],
        parameters=[REFERENCE, PERSON_ID],
        request=InputSerializer,
        responses={200: ContactPersonDetailSerializer, **_WRITE_ERRORS},
    )
    def post(self, request, reference: str, pk: int):
        incident, person = self.person(request, reference, pk)
        data = self.input(request)
        services.contact_mark_unreachable(
            person=person, note=data["note"], by=Actor.from_request(request)
        )
        return self.done(incident, pk)


class ContactWaiveApi(_PersonWriteApi):
    """Waive contacting a person, with a reason. Comms and Admin only."""

    write_perm = WAIVE

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

        class Meta:
            ref_name = "ContactWaiveInput"

    @extend_schema(
        operation_id="contact_waive",
        summary="Waive contacting a person",
        description="From pending or unreachable; the reason is required and kept in the "
        "ledger and the audit trail (`contact.waived`). A contacted person cannot be waived "
        "(409 `illegal_contact_transition`).",
        tags=["contact"],
        parameters=[REFERENCE, PERSON_ID],
        request=InputSerializer,
        responses={200: ContactPersonDetailSerializer, **_WRITE_ERRORS},
    )
    def post(self, request, reference: str, pk: int):
        incident, person = self.person(request, reference, pk)
        data = self.input(request)
        services.contact_waive(person=person, reason=data["reason"], by=Actor.from_request(request))
        return self.done(incident, pk)


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "enum": ["me"]}, {"type": "integer"}],
        "nullable": True,
        "description": '"me", a user id, or null for nobody.',
    }
)
class AssigneeField(serializers.Field):
    """ "me", a user id, or null for nobody."""

    def to_internal_value(self, data):
        if data is None or data == "me" or (isinstance(data, int) and data > 0):
            return data
        if isinstance(data, str) and data.isdigit():
            return int(data)
        raise serializers.ValidationError('Give "me", a user id, or null for nobody.')

    def to_representation(self, value):
        return value


def assignee_of(request, value):
    from django.contrib.auth import get_user_model

    if value is None:
        return None
    if value == "me":
        return request.user
    user = get_user_model().objects.filter(pk=value).first()
    if user is None:
        raise serializers.ValidationError({"assignee": ["No such user."]})
    return user


class ContactAssignApi(_PersonWriteApi):
    """Give a person's follow-up to someone, or to nobody."""

    write_perm = FOLLOW_UP

    class InputSerializer(serializers.Serializer):
        assignee = AssigneeField(allow_null=True, help_text='"me", a user id, or null.')

        class Meta:
            ref_name = "ContactAssignInput"

    @extend_schema(
        operation_id="contact_assign",
        summary="Assign a person's follow-up",
        description="To a user who may record contacts (Support, Admin), or to nobody with "
        "null. The same assignee again changes nothing. Audited (`contact.assigned`).",
        tags=["contact"],
        parameters=[REFERENCE, PERSON_ID],
        request=InputSerializer,
        responses={200: ContactPersonDetailSerializer, **_WRITE_ERRORS},
    )
    def post(self, request, reference: str, pk: int):
        incident, person = self.person(request, reference, pk)
        data = self.input(request)
        services.contact_assign(
            person=person,
            assignee=assignee_of(request, data["assignee"]),
            by=Actor.from_request(request),
        )
        return self.done(incident, pk)


__all__ = [
    "ContactAssignApi",
    "ContactPeopleApi",
    "ContactPersonApi",
    "ContactRecordApi",
    "ContactUnreachableApi",
    "ContactWaiveApi",
]
