"""The Evidence tab's pages, included from incidents/urls.py (names in the incidents namespace)."""

from django.urls import path

from incidents import views_export

_incident = "incidents/<str:reference>"

urlpatterns = [
    path(f"{_incident}/evidence/", views_export.evidence, name="evidence"),
    path(
        f"{_incident}/evidence/<int:export_id>/",
        views_export.evidence_export,
        name="evidence-export",
    ),
    path(
        f"{_incident}/evidence/<int:export_id>/download/",
        views_export.evidence_download,
        name="evidence-download",
    ),
]
