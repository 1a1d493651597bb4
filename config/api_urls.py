"""URLs under /api/. Names are un-namespaced and start with "api-"."""

from django.urls import path, re_path

from incidents.api import incidents as api

urlpatterns = [
    path("auth/token/", api.TokenApi.as_view(), name="api-token"),
    path("incidents/", api.IncidentListApi.as_view(), name="api-incident-list"),
    path("incidents/<str:reference>/", api.IncidentDetailApi.as_view(), name="api-incident-detail"),
    path(
        "incidents/<str:reference>/transition/",
        api.IncidentTransitionApi.as_view(),
        name="api-incident-transition",
    ),
    path(
        "incidents/<str:reference>/timeline/",
        api.IncidentTimelineApi.as_view(),
        name="api-incident-timeline",
    ),
    path("schema/", api.SchemaApi.as_view(), name="api-schema"),
    path("docs/", api.docs, name="api-docs"),
    # Keep last: any other /api/ path answers 404 in the API's error format.
    re_path(r"^", api.NotFoundApi.as_view(), name="api-not-found"),
]
