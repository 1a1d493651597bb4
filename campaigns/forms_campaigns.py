"""Forms for the sending pages. They parse input; the services decide what may be sent."""

from django import forms
from django.conf import settings

from campaigns.models import Delivery
from campaigns.services.sending import RESOLVE_DECISIONS

MAX_RATE_LIMIT = 10_000
MAX_BATCH_SIZE = 50_000
REASON_CHARS = 2_000


def _mailer_choices() -> list[tuple[str, str]]:
    return [(alias, alias) for alias in settings.MAILERS]


class LaunchForm(forms.Form):
    """How to send, and whether people already reached get it again (only with a reason).

    The hidden fields belong to the confirmation step: the content hash the page
    showed, the numbers it stated, and a one-time token against double clicks.
    """

    rate_limit = forms.IntegerField(
        label="Rate limit (messages per second)",
        min_value=1,
        max_value=MAX_RATE_LIMIT,
        help_text="For the whole campaign, across every worker.",
        error_messages={"required": "Give a rate limit of at least 1 message per second."},
    )
    batch_size = forms.IntegerField(
        label="Batch size (deliveries per job)",
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        help_text="How many deliveries one background job works through.",
        error_messages={"required": "Give a batch size of at least 1."},
    )
    mailer = forms.ChoiceField(label="Send through", choices=_mailer_choices)
    send_again = forms.BooleanField(
        label="Send again to people who are already in a campaign of this incident",
        required=False,
    )
    resend_reason = forms.CharField(
        label="Why should they get it again?",
        required=False,
        max_length=REASON_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to send again. It goes into the audit trail.",
    )
    content_hash = forms.CharField(required=False, widget=forms.HiddenInput(), max_length=64)
    expected = forms.CharField(required=False, widget=forms.HiddenInput(), max_length=100)
    token = forms.CharField(required=False, widget=forms.HiddenInput(), max_length=64)

    def clean(self):
        data = super().clean()
        reason = (data.get("resend_reason") or "").strip()
        data["resend_reason"] = reason
        if data.get("send_again") and not reason:
            self.add_error("resend_reason", "Say why these people should get the apology again.")
        elif reason and not data.get("send_again"):
            self.add_error(
                "send_again",
                "Tick “send again” to send to people who already have it, or leave the reason "
                "empty.",
            )
        return data


class PauseForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=REASON_CHARS,
        help_text="Shown on the campaign while it is paused, and kept in the audit trail.",
    )


class ResolveForm(forms.Form):
    """A decision on one uncertain delivery: send it again, or count it as sent. Reason required."""

    decision = forms.ChoiceField(
        choices=[(d, d) for d in RESOLVE_DECISIONS],
        error_messages={"required": "Choose “Resend” or “Mark sent”."},
    )
    reason = forms.CharField(
        label="Reason",
        max_length=REASON_CHARS,
        error_messages={"required": "Say why, for the audit trail."},
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why, for the audit trail.")
        return reason


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="State", required=False, choices=[("", "Any state"), *Delivery.Status.choices]
    )
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=320,
        widget=forms.SearchInput(attrs={"placeholder": "Address, part of it, or a code"}),
    )

    def criteria(self) -> dict:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return {"status": data.get("status") or "", "search": (data.get("q") or "").strip()}
