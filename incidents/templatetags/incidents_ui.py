"""Small presentation helpers for the incident pages."""

from datetime import timedelta

from django import template

from incidents.models import Incident

register = template.Library()

_STATUS_ORDER = list(Incident.Status.values)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@register.filter
def duration(value: timedelta | None) -> str:
    """A length of time in words, to the minute: "2 days 5 hours", "15 minutes".

    Negative values read the same as positive ones; the sentence around them
    says whether it is time left or time overdue.
    """
    if value is None:
        return ""
    minutes = abs(int(value.total_seconds())) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        parts = [_plural(days, "day")] + ([_plural(hours, "hour")] if hours else [])
    elif hours:
        parts = [_plural(hours, "hour")] + ([_plural(minutes, "minute")] if minutes else [])
    else:
        parts = [_plural(minutes, "minute")]
    return " ".join(parts)


@register.simple_tag
def status_moves(incident: Incident) -> list[dict]:
    """The status changes on offer, worded by direction: forward, back, reopen, resolve."""
    moves = []
    current = _STATUS_ORDER.index(incident.status)
    for value in incident.allowed_transitions():
        label = Incident.Status(value).label
        backwards = _STATUS_ORDER.index(value) < current
        if value == Incident.Status.RESOLVED:
            verb = "Resolve…"
        elif incident.status == Incident.Status.RESOLVED:
            verb = f"Reopen as {label}"
        elif backwards:
            verb = f"Back to {label}"
        else:
            verb = f"Move to {label}"
        moves.append({"value": value, "label": label, "verb": verb, "secondary": backwards})
    return moves
