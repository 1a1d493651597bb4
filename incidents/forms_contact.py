"""Forms for contact tracking: the follow-up filters, recording a contact, waiving, assigning."""

from django import forms
from django.core.exceptions import ValidationError

from incidents.forms_audience import UTCDateTimeField
from incidents.models.contact import ContactStatus
from incidents.selectors_contact import REASONS
from incidents.services.contact import MANUAL_METHODS

STATUS_CHOICES = [("", "Any status"), *ContactStatus.choices]
METHOD_CHOICES = [(m.value, m.label) for m in MANUAL_METHODS]
NOTE_MAX = 2_000


class FollowUpFilterForm(forms.Form):
    """?status=unreachable&segment=3&assignee=mine&reason=hard_bounce&locale=de&q=…"""

    status = forms.ChoiceField(label="Contact status", required=False, choices=STATUS_CHOICES)
    failed = forms.BooleanField(label="Include pending people whose email failed", required=False)
    segment = forms.TypedChoiceField(label="Segment", required=False, coerce=int, empty_value=None)
    assignee = forms.ChoiceField(label="Assigned to", required=False)
    reason = forms.ChoiceField(
        label="Reason", required=False, choices=[("", "Any reason"), *REASONS.items()]
    )
    # Free text: listing the distinct locales would read every row of a large list.
    locale = forms.CharField(
        label="Locale",
        required=False,
        max_length=16,
        widget=forms.TextInput(attrs={"placeholder": "e.g. de", "size": 6}),
    )
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=320,
        widget=forms.SearchInput(attrs={"placeholder": "Address or customer id"}),
    )

    def __init__(self, *args, segments=(), assignees=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segment"].choices = [("", "Any segment")] + [(s.pk, s.name) for s in segments]
        self.fields["assignee"].choices = [
            ("", "Anyone or nobody"),
            ("mine", "Me"),
            ("none", "Nobody"),
        ] + [(str(u.pk), u.get_username()) for u in assignees]

    def criteria(self, *, default_status: str) -> dict:
        """Keyword arguments for selectors_contact.contact_people."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        # A link that names no status (?segment=3) shows the queue, as the bare page does.
        given = self.is_bound and "status" in self.data
        status = data.get("status", "") if given else default_status
        return {
            "status": status or "",
            "failed_pending": bool(data.get("failed")),
            "segment_id": data.get("segment"),
            "assignee": data.get("assignee") or "",
            "reason": data.get("reason") or "",
            "locale": (data.get("locale") or "").strip(),
            "search": (data.get("q") or "").strip(),
        }


def _note(
    label: str, *, required: bool = False, help_text: str = "", missing: str = ""
) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        error_messages={"required": missing} if missing else None,
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=help_text,
    )


class RecordContactForm(forms.Form):
    method = forms.ChoiceField(label="How were they reached?", choices=METHOD_CHOICES)
    contacted_at = UTCDateTimeField(
        label="When (UTC)", required=False, help_text="Leave empty for now."
    )
    note = _note("Note", help_text="What was said or sent, a ticket number. Kept in the ledger.")


class UnreachableForm(forms.Form):
    note = _note("Why are they unreachable?", help_text="Such as “Phone number disconnected”.")


class WaiveForm(forms.Form):
    reason = _note(
        "Why does this person not need to be contacted?",
        required=True,
        help_text="Kept in the ledger and the audit trail, such as “Account closed in 2019”.",
        missing="Say why this person does not need to be contacted.",
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why this person does not need to be contacted.")
        return reason


class AssignForm(forms.Form):
    """assignee: "me", "none" (unassign) or a user id."""

    assignee = forms.CharField(max_length=20)

    def resolve(self, user, assignees) -> tuple[bool, object]:
        """(valid, the user or None)."""
        value = self.cleaned_data.get("assignee", "")
        if value == "me":
            return True, user
        if value == "none":
            return True, None
        match = next((u for u in assignees if str(u.pk) == value), None)
        return match is not None, match


class BulkForm(forms.Form):
    """One action for the ticked people, or for everyone the filters match (scope=all)."""

    ACTIONS = [
        ("assign_me", "Assign to me"),
        ("unassign", "Unassign"),
        ("record", "Record a contact"),
        ("waive", "Waive"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    scope = forms.ChoiceField(choices=[("selected", "Ticked people"), ("all", "Everyone matching")])
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    method = forms.ChoiceField(choices=[("", "—"), *METHOD_CHOICES], required=False)
    note = forms.CharField(required=False, max_length=NOTE_MAX)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any ids: the service keeps only people of this incident, on its list.
        self.fields["ids"].valid_value = lambda value: True  # type: ignore[method-assign]

    def clean(self):
        data = super().clean()
        if data.get("scope") == "selected" and not data.get("ids"):
            raise ValidationError("Tick at least one person, or choose everyone matching.")
        if data.get("action") == "record" and not data.get("method"):
            self.add_error("method", "Choose how they were reached.")
        if data.get("action") == "waive" and not (data.get("note") or "").strip():
            self.add_error("note", "Say why these people do not need to be contacted.")
        return data
