"""Forms for the message pages. They parse input; the services decide what is valid.

The draft form has one row per language. Adding or removing a language is a
plain form post that re-shows the form with what was typed (no script needed);
only "Save" calls services.version_create, whose errors land on the fields they
name ("content.de.text" → the German plain-text field).
"""

import re

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import get_language_info

from campaigns.rendering import PARTS, normalise_locale

LOCALE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8}){0,2}$")
MAX_LOCALES = 40
PART_LABELS = {"subject": "Subject", "text": "Plain text", "html": "HTML"}


def locale_name(locale: str) -> str:
    """“German (de)”, or just the code for a locale Django does not know."""
    for code in (locale, locale.split("-")[0]):
        try:
            return f"{get_language_info(code)['name']} ({locale})"
        except KeyError:
            continue
    return locale


def parse_locales(raw: str) -> list[str]:
    """The form's own list of languages (a hidden field): valid, unique, in order."""
    locales: list[str] = []
    for item in (raw or "").split():
        locale = normalise_locale(item)
        if LOCALE.match(locale) and locale not in locales:
            locales.append(locale)
    return locales[:MAX_LOCALES]


def content_field(locale: str, part: str) -> str:
    return f"content-{locale}-{part}"


class MessageForm(forms.Form):
    """Sender settings, then subject, plain text and HTML for each language in `locales`."""

    sender_name = forms.CharField(
        label="Sender name",
        required=False,
        help_text="Shown as the sender, such as “Retailer Customer Care”.",
    )
    sender_address = forms.CharField(
        label="Sender address", required=False, widget=forms.EmailInput()
    )
    reply_to = forms.CharField(
        label="Reply-to address",
        required=False,
        widget=forms.EmailInput(),
        help_text="Where replies go. Leave empty to use the sender address.",
    )
    fallback_locale = forms.ChoiceField(
        label="Fallback language",
        help_text="For people whose language has no variant here.",
    )
    new_locale = forms.CharField(
        label="Add a language",
        required=False,
        max_length=20,
        help_text="A locale code such as fr, nl or de-at.",
    )
    # The version the editor started from: a save is refused if someone saved in between.
    based_on = forms.IntegerField(min_value=0, widget=forms.HiddenInput())
    locales = forms.CharField(required=False, widget=forms.HiddenInput())

    def __init__(self, *args, locales: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.locale_list = locales
        self.fields["fallback_locale"].choices = [(code, locale_name(code)) for code in locales]
        self.initial["locales"] = " ".join(locales)
        for locale in locales:
            self.fields[content_field(locale, "subject")] = forms.CharField(
                label="Subject", required=False
            )
            self.fields[content_field(locale, "text")] = forms.CharField(
                label="Plain text",
                required=False,
                widget=forms.Textarea(attrs={"rows": 10}),
                help_text="Leave empty to make it from the HTML.",
            )
            self.fields[content_field(locale, "html")] = forms.CharField(
                label="HTML",
                required=False,
                widget=forms.Textarea(attrs={"rows": 10}),
                help_text="Optional. Leave empty to send plain text only.",
            )

    @classmethod
    def initial_for(cls, version, *, locales: list[str]) -> dict:
        """The form's starting values: the version being edited, or a blank draft."""
        if version is None:
            fallback = normalise_locale(settings.MESSAGE_DEFAULT_FALLBACK_LOCALE)
            return {
                "based_on": 0,
                "fallback_locale": fallback if fallback in locales else locales[0],
            }
        initial = {
            "based_on": version.number,
            "sender_name": version.sender_name,
            "sender_address": version.sender_address,
            "reply_to": version.reply_to,
            "fallback_locale": version.fallback_locale,
        }
        for locale, variant in version.content.items():
            for part in PARTS:
                initial[content_field(locale, part)] = variant.get(part, "")
        return initial

    @property
    def locale_rows(self) -> list[dict]:
        return [
            {
                "locale": locale,
                "name": locale_name(locale),
                "fields": [self[content_field(locale, part)] for part in PARTS],
            }
            for locale in self.locale_list
        ]

    def content(self) -> dict:
        data = self.cleaned_data
        return {
            locale: {part: data.get(content_field(locale, part), "") for part in PARTS}
            for locale in self.locale_list
        }

    def add_service_error(self, error: ValidationError) -> None:
        """Put version_create's errors next to their fields ("content.de.html" → German HTML)."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for key, errors in error.error_dict.items():
            name = key
            if key.startswith("content."):
                _, locale, *part = key.split(".", 2)
                name = content_field(locale, part[0]) if part else None
                if name is None or name not in self.fields:
                    errors = [f"{locale_name(locale)}: {m}" for e in errors for m in e.messages]
                    name = None
            self.add_error(name if name in self.fields else None, errors)


def locales_after(data, locales: list[str]) -> tuple[list[str], str]:
    """The languages after an "add" or "remove" press, and an error about the added one."""
    removed = normalise_locale(data.get("remove_locale", ""))
    if removed:
        return [locale for locale in locales if locale != removed] or locales, ""
    raw = (data.get("new_locale") or "").strip()
    if not raw:
        return locales, "Type a locale code such as “fr” or “de-at”, then press “Add language”."
    added = normalise_locale(raw.replace("_", "-"))
    if not LOCALE.match(added):
        return locales, f"“{raw}” is not a locale such as “fr” or “de-at”."
    if added in locales:
        return locales, f"{locale_name(added)} is already there."
    if len(locales) >= MAX_LOCALES:
        return locales, f"A message has at most {MAX_LOCALES} languages."
    return [*locales, added], ""


class DecisionForm(forms.Form):
    """Approve (comment optional) or reject (comment required) one exact version."""

    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=5_000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    content_hash = forms.CharField(widget=forms.HiddenInput(), max_length=64)


class RejectForm(DecisionForm):
    comment = forms.CharField(
        label="What needs to change?",
        max_length=5_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent to the author by email. Required.",
        error_messages={"required": "Say what needs to change, for the author."},
    )


class TestSendForm(forms.Form):
    """Seed-list addresses and the languages to send. The service refuses any other address."""

    # Not a pytest test class, despite the name.
    __test__ = False

    addresses = forms.CharField(
        label="Send to",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Seed-list addresses only, one per line or separated by commas.",
        error_messages={"required": "Name at least one seed-list address."},
    )
    locales = forms.MultipleChoiceField(
        label="Languages",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one language."},
    )

    def __init__(self, *args, version_locales: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["locales"].choices = [(code, locale_name(code)) for code in version_locales]

    def clean_addresses(self) -> list[str]:
        return [a for a in re.split(r"[\s,;]+", self.cleaned_data["addresses"]) if a]


class PreviewForm(forms.Form):
    """Who to render the version for, and in which language. Everything is optional."""

    q = forms.CharField(
        label="Find a person",
        required=False,
        max_length=320,
        widget=forms.SearchInput(attrs={"placeholder": "Address, customer id or person id"}),
    )
    person = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput())
    locale = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput())
    sample = forms.BooleanField(required=False, widget=forms.HiddenInput())

    def choice(self) -> dict:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return {
            "q": (data.get("q") or "").strip(),
            "person": data.get("person"),
            "locale": normalise_locale(data.get("locale") or ""),
            "sample": bool(data.get("sample")),
        }


class CompareForm(forms.Form):
    a = forms.TypedChoiceField(label="From version", coerce=int)
    b = forms.TypedChoiceField(label="To version", coerce=int)

    def __init__(self, *args, numbers: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(n, f"Version {n}") for n in numbers]
        self.fields["a"].choices = self.fields["b"].choices = choices
