"""Template tags for contact tracking: what blocks resolving, for the confirmation page."""

from django import template

from incidents import selectors_contact

register = template.Library()


@register.simple_tag
def completion_blockers(incident) -> list:
    """The people blocking resolution, per contact status, counted exactly now."""
    return selectors_contact.completion_blockers(incident=incident)
