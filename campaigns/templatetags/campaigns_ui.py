"""Template tags for the message pages' summaries on other pages (the incident overview)."""

from django import template

from campaigns.views_messages import segment_rows

register = template.Library()

# The order in which segments need someone: nothing written, sent back, waiting, done.
_URGENCY = {"none": 0, "rejected": 1, "awaiting": 2, "approved": 3}


@register.simple_tag(takes_context=True)
def messages_summary(context, incident) -> dict:
    """Each segment's message status, how many are approved, and the most pressing next step."""
    rows = segment_rows(incident, context["request"].user, with_counts=False)
    pressing = min(rows, key=lambda row: _URGENCY[row["status"]["kind"]], default=None)
    return {
        "rows": rows,
        "approved": sum(row["status"]["kind"] == "approved" for row in rows),
        "pressing": pressing,
    }
