"""Forms for the staff web UI. They parse input; the services decide and save."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from incidents.models import Incident
from incidents.services import EDITABLE_FIELDS

User = get_user_model()


class DateTimeLocalField(forms.DateTimeField):
    """A browser date-and-time picker, to the minute, in the current time zone."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def has_changed(self, initial, data):
        # The picker shows minutes. A stored 10:04:37 comes back as 10:04, and
        # that must not count as an edit, or saving the title would also
        # rewrite the awareness time (and move the regulator clock).
        try:
            data = self.to_python(data)
        except forms.ValidationError:
            return True
        if initial is None or data is None:
            return initial != data
        return initial.replace(second=0, microsecond=0) != data.replace(second=0, microsecond=0)


class OwnerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        full_name = obj.get_full_name()
        return f"{full_name} ({obj.get_username()})" if full_name else obj.get_username()


class IncidentForm(forms.ModelForm):
    """The editable fields of an incident, for opening and for editing one.

    As a ModelForm it already checks the model's rules (such as "exposure needs an
    awareness time"); the service's full_clean stays the authority, and the view
    puts any error it raises on this form too.
    """

    class Meta:
        model = Incident
        fields = EDITABLE_FIELDS
        field_classes = {
            "sent_from": DateTimeLocalField,
            "sent_until": DateTimeLocalField,
            "became_aware_at": DateTimeLocalField,
            "owner": OwnerChoiceField,
        }
        widgets = {"summary": forms.Textarea(attrs={"rows": 5})}
        labels = {
            "title": "Title",
            "summary": "What went wrong",
            "original_template": "Template or campaign",
            "original_subject": "Subject line",
            "sent_from": "Sending started",
            "sent_until": "Sending ended",
            "personal_data_exposed": "Personal data was exposed",
            "became_aware_at": "Became aware at",
        }
        help_texts = {
            "title": "A short name colleagues will recognise, such as “Registry gift notice "
            "sent to wrong customers”.",
            "summary": "What was sent, to whom, and how you found out.",
            "original_subject": "The subject of the email that should not have gone out.",
            "esp": "The email service provider that sent it, such as Postmark or Mailgun.",
            "personal_data_exposed": "Tick if the email revealed anything about another "
            "person (a name, address, order or registry).",
            "became_aware_at": "When the company first knew. Required if personal data was "
            "exposed: the 72-hour regulator deadline runs from here.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only active users can own an incident, but editing an incident whose
        # owner has since left must not force a new owner on the same save.
        active = Q(is_active=True)
        if self.instance.owner_id:
            active |= Q(pk=self.instance.owner_id)
        self.fields["owner"].queryset = User.objects.filter(active).order_by("username")
        zone = timezone.get_current_timezone_name()
        for name in ("sent_from", "sent_until", "became_aware_at"):
            field = self.fields[name]
            field.help_text = f"{field.help_text} Time zone: {zone}.".strip()

    def changes(self) -> dict:
        """Only the fields the user actually changed, for incident_update."""
        return {name: self.cleaned_data[name] for name in self.changed_data}


class IncidentFilterForm(forms.Form):
    """The list filters. Invalid values are ignored rather than shown as errors."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.SearchInput(attrs={"placeholder": "Reference, title, subject…"}),
    )
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *Incident.Status.choices]
    )
    severity = forms.ChoiceField(
        label="Severity", required=False, choices=[("", "Any severity"), *Incident.Severity.choices]
    )
    owner = OwnerChoiceField(
        label="Owner", required=False, queryset=User.objects.none(), empty_label="Anyone"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = User.objects.filter(is_active=True).order_by("username")

    def selector_kwargs(self) -> dict:
        if not self.is_bound:
            return {}
        self.is_valid()
        data = self.cleaned_data
        owner = data.get("owner")
        return {
            "search": (data.get("q") or "").strip(),
            "status": data.get("status") or "",
            "severity": data.get("severity") or "",
            "owner_id": owner.pk if owner else None,
        }


class NoteForm(forms.Form):
    body = forms.CharField(
        label="Add a note",
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Notes are part of the permanent record and cannot be edited.",
        error_messages={"required": "A note cannot be empty."},
    )


class TransitionForm(forms.Form):
    to_status = forms.ChoiceField(choices=Incident.Status.choices)
    note = forms.CharField(
        label="Note (optional)",
        required=False,
        max_length=2_000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why the status is changing. It is added to the timeline.",
    )
    confirm = forms.BooleanField(
        label="I confirm every affected customer has been contacted, or the reason they "
        "were not is recorded.",
        required=False,
    )

    def needs_confirmation(self) -> bool:
        """Resolving closes the incident, so it takes an explicit confirmation."""
        return self.cleaned_data.get(
            "to_status"
        ) == Incident.Status.RESOLVED and not self.cleaned_data.get("confirm")
