from django.contrib.auth.decorators import permission_required
from django.shortcuts import render

from incidents import selectors


@permission_required("incidents.view_incident", raise_exception=True)
def incident_list(request):
    return render(request, "incidents/list.html", {"incidents": selectors.incident_list()})
