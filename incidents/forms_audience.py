"""Forms for the audience, send log and regulator pages. They parse input; services decide.

Times typed into these forms are UTC, whatever the server's time zone: the
send log stores UTC and ESP exports show UTC, so the person comparing the two
never has to convert.
"""

import json
from datetime import UTC, datetime, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents.filters import RULE_OPS, STATUSES, AudienceFilter, rules_q
from incidents.sendlog_files import FIELDS as SENDLOG_FIELDS

METADATA_ROWS = 3
RULE_ROWS = 5
MAX_PEOPLE_FILE_BYTES = 20 * 1024**2


class UTCDateTimeField(forms.DateTimeField):
    """A browser date-and-time picker, to the minute, read and shown in UTC."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value):
        with timezone.override(UTC):
            return super().to_python(value)

    def prepare_value(self, value):
        if isinstance(value, datetime) and timezone.is_aware(value):
            return value.astimezone(UTC).replace(tzinfo=None)
        return value


def add_validation_error(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: on a field it names, else on top."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error)


def form_error_text(form: forms.Form) -> str:
    return " ".join(str(message) for errors in form.errors.values() for message in errors)


def read_text_upload(upload, *, limit: int) -> str:
    """An uploaded CSV as text, or a ValidationError a person can act on."""
    if upload.size and upload.size > limit:
        raise ValidationError(
            f"The file is larger than {limit // 1024**2} MB: split it into smaller files."
        )
    data = upload.read()
    if not data.strip():
        raise ValidationError("The file is empty.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(
            "The file is not UTF-8 text: save or export it as CSV (UTF-8)."
        ) from None


# --- Finding the audience -------------------------------------------------------------


def _floor_minute(value: datetime | None) -> datetime | None:
    return value.replace(second=0, microsecond=0) if value else None


def _ceil_minute(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    floor = _floor_minute(value)
    return floor if floor == value else floor + timedelta(minutes=1)


def _scalar_text(value) -> str:
    """A filter or rule value as the user would type it: true, 3, text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return ", ".join(_scalar_text(v) for v in value)
    return str(value)


class AudienceQueryForm(forms.Form):
    """What the mis-sent email looked like in the send log. Read by AudienceFilter.from_dict."""

    template = forms.CharField(
        label="Template or campaign",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"list": "recent-templates", "autocomplete": "off"}),
        help_text="Exactly as the send log names it. Suggestions: templates sent recently.",
    )
    tags = forms.CharField(
        label="Tags",
        required=False,
        max_length=500,
        help_text="Separate tags with commas. A message must carry every tag listed.",
    )
    sent_from = UTCDateTimeField(
        label="Sent from (UTC)",
        required=False,
        help_text="Messages sent at or after this time, in UTC.",
    )
    sent_until = UTCDateTimeField(
        label="Sent before (UTC)",
        required=False,
        help_text="Messages sent before this time, in UTC. The minute itself is not included.",
    )
    domain = forms.CharField(
        label="Recipient domain",
        required=False,
        max_length=255,
        help_text="Only recipients at this domain, such as example.com.",
    )
    locale = forms.CharField(label="Locale", required=False, max_length=16)
    status = forms.ChoiceField(
        label="Latest status",
        required=False,
        choices=[("", "Any status"), *((s, s.capitalize()) for s in STATUSES)],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for i in range(METADATA_ROWS):
            self.fields[f"meta_key_{i}"] = forms.CharField(
                label=f"Metadata key {i + 1}", required=False, max_length=64
            )
            self.fields[f"meta_value_{i}"] = forms.CharField(
                label=f"Value {i + 1}", required=False, max_length=200
            )

    @property
    def metadata_rows(self) -> list[tuple]:
        return [(self[f"meta_key_{i}"], self[f"meta_value_{i}"]) for i in range(METADATA_ROWS)]

    @classmethod
    def initial_for(cls, incident) -> dict:
        """The incident's own description of the mis-sent email, as a starting point."""
        return {
            "template": incident.original_template,
            "sent_from": _floor_minute(incident.sent_from),
            "sent_until": _ceil_minute(incident.sent_until),
        }

    @staticmethod
    def data_from_filters(filters: dict) -> dict:
        """Form data (strings) that reproduce stored filters: to show a preview again."""
        data = {
            name: filters.get(name) or ""
            for name in ("template", "domain", "locale", "status")
            if filters.get(name)
        }
        if filters.get("tags"):
            data["tags"] = ", ".join(filters["tags"])
        for name in ("sent_from", "sent_until"):
            if filters.get(name):
                moment = datetime.fromisoformat(filters[name]).astimezone(UTC)
                data[name] = moment.strftime("%Y-%m-%dT%H:%M")
        for i, (key, value) in enumerate(list((filters.get("metadata") or {}).items())[:3]):
            data[f"meta_key_{i}"], data[f"meta_value_{i}"] = key, _scalar_text(value)
        return data

    def clean(self):
        data = super().clean()
        for i in range(METADATA_ROWS):
            key = (data.get(f"meta_key_{i}") or "").strip()
            value = (data.get(f"meta_value_{i}") or "").strip()
            if value and not key:
                self.add_error(f"meta_key_{i}", "Name the metadata key for this value.")
            elif key and not value:
                self.add_error(f"meta_value_{i}", f"Give the value “{key}” must have.")
        return data

    def audience_filter(self) -> AudienceFilter | None:
        """The validated filter, or None with the reasons on the form."""
        if not self.is_valid():
            return None
        data = self.cleaned_data
        metadata = {}
        for i in range(METADATA_ROWS):
            key = data[f"meta_key_{i}"].strip()
            if key:
                metadata[key] = data[f"meta_value_{i}"].strip()
        try:
            return AudienceFilter.from_dict(
                {
                    "template": data["template"],
                    "tags": data["tags"],
                    "sent_from": data["sent_from"],
                    "sent_until": data["sent_until"],
                    "domain": data["domain"],
                    "locale": data["locale"],
                    "metadata": metadata,
                    "status": data["status"],
                }
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict") and "metadata" in exc.error_dict:
                exc = ValidationError(
                    {"meta_key_0" if k == "metadata" else k: v for k, v in exc.error_dict.items()}
                )
            add_validation_error(self, exc)
            return None


class FreezeForm(forms.Form):
    """Freezing what a preview showed. The filters travel as the preview's JSON."""

    filters = forms.CharField(widget=forms.HiddenInput)
    people = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    # How many queries were frozen when the preview was shown: a second click on
    # the same button (or a colleague's freeze in between) is caught by this.
    queries_seen = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    confirm = forms.BooleanField(
        label="I understand this cannot be undone: everyone found joins the affected list, "
        "and leaves it only when removed one by one with a reason.",
        error_messages={"required": "Tick the box to confirm before freezing."},
    )

    def clean_filters(self) -> AudienceFilter:
        try:
            data = json.loads(self.cleaned_data["filters"])
        except ValueError:
            raise ValidationError("The preview was damaged: preview again.") from None
        if not isinstance(data, dict):
            raise ValidationError("The preview was damaged: preview again.")
        return AudienceFilter.from_dict(data)


# --- Segments --------------------------------------------------------------------------

RULE_FIELD_CHOICES = [
    ("", "—"),
    ("locale", "Locale"),
    ("domain", "Domain"),
    ("latest_status", "Latest status"),
    ("message_count", "Messages received"),
    ("customer_id", "Customer id"),
    ("metadata", "Metadata…"),
]
RULE_OP_LABELS = {
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "gte": "is at least",
    "lte": "is at most",
    "exists": "is present",
}
assert set(RULE_OP_LABELS) == set(RULE_OPS)


def describe_rule(rule: dict) -> str:
    """“metadata.has_registry is true”: a rule as a sentence."""
    field = str(rule.get("field", ""))
    label = dict(RULE_FIELD_CHOICES).get(field, field).lower()
    op = rule.get("op", "eq")
    if op == "exists":
        return f"{label} is {'present' if rule.get('value', True) not in (False, 'false') else 'absent'}"
    return f"{label} {RULE_OP_LABELS.get(op, op)} {_scalar_text(rule.get('value'))}"


class SegmentForm(forms.Form):
    """A segment's name, place in the order and rules (all must hold), one row per rule."""

    name = forms.CharField(
        label="Name",
        max_length=100,
        error_messages={"required": "Give the segment a name."},
        help_text="Such as “German customers” or “Has a registry”.",
    )
    position = forms.IntegerField(
        label="Order",
        required=False,
        min_value=0,
        help_text="Segments are tried lowest number first; a person joins the first one "
        "whose rules all match. Leave empty to put it last (before “Everyone else”).",
    )

    def __init__(self, *args, is_default: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_default = is_default
        if is_default:
            del self.fields["position"]
            return
        for i in range(RULE_ROWS):
            self.fields[f"rule_field_{i}"] = forms.ChoiceField(
                label=f"Rule {i + 1}: field", required=False, choices=RULE_FIELD_CHOICES
            )
            self.fields[f"rule_key_{i}"] = forms.CharField(
                label=f"Rule {i + 1}: metadata key",
                required=False,
                max_length=64,
                help_text="Only for metadata.",
            )
            self.fields[f"rule_op_{i}"] = forms.ChoiceField(
                label=f"Rule {i + 1}: condition",
                required=False,
                choices=list(RULE_OP_LABELS.items()),
            )
            self.fields[f"rule_value_{i}"] = forms.CharField(
                label=f"Rule {i + 1}: value", required=False, max_length=500
            )

    @classmethod
    def initial_for(cls, segment) -> dict:
        initial = {"name": segment.name, "position": segment.position}
        for i, rule in enumerate(segment.rules[:RULE_ROWS]):
            field = str(rule.get("field", ""))
            if field.startswith("metadata."):
                initial[f"rule_field_{i}"] = "metadata"
                initial[f"rule_key_{i}"] = field.removeprefix("metadata.")
            else:
                initial[f"rule_field_{i}"] = field
            initial[f"rule_op_{i}"] = rule.get("op", "eq")
            initial[f"rule_value_{i}"] = _scalar_text(rule.get("value", ""))
        return initial

    @property
    def rule_rows(self) -> list[dict]:
        if self.is_default:
            return []
        return [
            {
                "number": i + 1,
                "field": self[f"rule_field_{i}"],
                "key": self[f"rule_key_{i}"],
                "op": self[f"rule_op_{i}"],
                "value": self[f"rule_value_{i}"],
            }
            for i in range(RULE_ROWS)
        ]

    def clean(self):
        data = super().clean()
        rules = []
        for i in range(0 if self.is_default else RULE_ROWS):
            field = data.get(f"rule_field_{i}") or ""
            key = (data.get(f"rule_key_{i}") or "").strip()
            op = data.get(f"rule_op_{i}") or "eq"
            value = (data.get(f"rule_value_{i}") or "").strip()
            if not field:
                if value or key:
                    self.add_error(f"rule_field_{i}", "Choose the field this rule looks at.")
                continue
            if field == "metadata":
                if not key:
                    self.add_error(f"rule_key_{i}", "Name the metadata key.")
                    continue
                field = f"metadata.{key}"
            if op == "exists":
                value = value or "true"
            elif not value:
                self.add_error(f"rule_value_{i}", "Give the value to compare with.")
                continue
            if field == "domain" and op not in ("eq", "ne"):
                self.add_error(f"rule_op_{i}", "A domain rule takes “is” or “is not”.")
                continue
            if field == "message_count" and op != "exists":
                numbers = value.split(",") if op == "in" else [value]
                if not all(n.strip().isdigit() for n in numbers):
                    self.add_error(
                        f"rule_value_{i}", "Messages received is a whole number, such as 2."
                    )
                    continue
            rule = {"field": field, "op": op, "value": value}
            try:
                rules_q([rule])
            except ValidationError as exc:
                reason = " ".join(exc.messages).removeprefix("Rule 1: ")
                self.add_error(f"rule_value_{i}", reason)
                continue
            rules.append(rule)
        data["rules"] = rules
        return data


# --- The affected list -------------------------------------------------------------------


class PeopleFilterForm(forms.Form):
    """The affected list's filters. Invalid values are ignored rather than shown as errors."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=320,
        widget=forms.SearchInput(attrs={"placeholder": "Address or customer id"}),
    )
    segment = forms.TypedChoiceField(label="Segment", required=False, coerce=int, empty_value=None)
    suppressed = forms.ChoiceField(
        label="Suppressed",
        required=False,
        choices=[("", "Either"), ("yes", "Suppressed only"), ("no", "Not suppressed")],
    )
    show = forms.ChoiceField(
        label="Show",
        required=False,
        choices=[("", "People on the list"), ("removed", "Removed people"), ("all", "Both")],
    )

    def __init__(self, *args, segments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segment"].choices = [("", "Any segment")] + [
            (segment.pk, segment.name) for segment in segments
        ]

    def criteria(self) -> dict:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return {
            "search": (data.get("q") or "").strip(),
            "segment_id": data.get("segment"),
            "suppressed": {"yes": True, "no": False}.get(data.get("suppressed") or ""),
            "show": data.get("show") or "",
        }


class RemovePersonForm(forms.Form):
    reason = forms.CharField(
        label="Why is this person not affected?",
        max_length=2_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Kept with the list and in the audit trail, such as “Internal test address”.",
        error_messages={"required": "Say why this person is removed from the list."},
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why this person is removed from the list.")
        return reason


class AddPeopleForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A header line, then one person a line. Columns: address (required), "
        "customer_id and locale (optional).",
        error_messages={"required": "Choose a CSV file to upload."},
    )
    note = forms.CharField(
        label="Where does this file come from?",
        required=False,
        max_length=500,
        help_text="Recorded in the audit trail, such as “Support tickets about the email”.",
    )

    def clean_file(self) -> str:
        return read_text_upload(self.cleaned_data["file"], limit=MAX_PEOPLE_FILE_BYTES)


# --- Send log imports ------------------------------------------------------------------


class SendLogUploadForm(forms.Form):
    file = forms.FileField(
        label="Send log file",
        help_text="CSV or JSON Lines (one object a line), UTF-8, as your ESP exports it.",
        error_messages={"required": "Choose the send log file to upload."},
    )
    file_format = forms.ChoiceField(
        label="Format",
        required=False,
        choices=[("", "Tell from the file name"), ("csv", "CSV"), ("jsonl", "JSON Lines")],
    )
    # A fresh token per rendered form: sending the same form twice is refused.
    token = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in SENDLOG_FIELDS:
            self.fields[f"map_{name}"] = forms.CharField(
                label=name,
                required=False,
                max_length=200,
                widget=forms.TextInput(attrs={"placeholder": name}),
            )

    @property
    def mapping_fields(self) -> list:
        return [self[f"map_{name}"] for name in SENDLOG_FIELDS]

    def column_map(self) -> dict[str, str]:
        return {
            name: self.cleaned_data[f"map_{name}"].strip()
            for name in SENDLOG_FIELDS
            if self.cleaned_data.get(f"map_{name}", "").strip()
        }


# --- The regulator ----------------------------------------------------------------------


class RegulatorNotificationForm(forms.Form):
    notified_at = UTCDateTimeField(
        label="Notified at (UTC)",
        help_text="When the notification was sent to the regulator, in UTC.",
        error_messages={"required": "Say when the regulator was notified."},
    )
    reference = forms.CharField(
        label="Regulator's reference",
        required=False,
        max_length=200,
        help_text="The case or reference number the regulator gave, if any.",
    )
