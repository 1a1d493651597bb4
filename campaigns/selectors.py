from django.db.models import QuerySet

from campaigns.models import Suppression


def suppression_list(*, search: str = "", reason: str = "") -> QuerySet[Suppression]:
    qs = Suppression.objects.select_related("created_by")
    if search:
        qs = qs.filter(address__contains=search.strip().lower())
    if reason:
        qs = qs.filter(reason=reason)
    return qs
