from django.urls import include, path

from incidents import views, views_audience, views_contact, views_dashboard, views_sendlog

app_name = "incidents"

_incident = "incidents/<str:reference>"

urlpatterns = [
    path("", views.incident_list, name="list"),
    path("incidents/new/", views.incident_create, name="create"),
    path(f"{_incident}/", views.incident_detail, name="detail"),
    path(f"{_incident}/edit/", views.incident_edit, name="edit"),
    path(f"{_incident}/transition/", views.incident_transition, name="transition"),
    path(f"{_incident}/notes/", views.incident_add_note, name="add-note"),
    path(
        f"{_incident}/regulator/",
        views.regulator_notification,
        name="regulator-notification",
    ),
    # --- Audience: find who received it, freeze, segment, trim ---
    path(f"{_incident}/audience/", views_audience.audience, name="audience"),
    path(f"{_incident}/audience/freeze/", views_audience.audience_freeze, name="audience-freeze"),
    path(f"{_incident}/audience/segments/", views_audience.segments, name="segments"),
    path(
        f"{_incident}/audience/segments/new/",
        views_audience.segment_create,
        name="segment-create",
    ),
    path(
        f"{_incident}/audience/segments/<int:segment_id>/",
        views_audience.segment_edit,
        name="segment-edit",
    ),
    path(
        f"{_incident}/audience/segments/<int:segment_id>/delete/",
        views_audience.segment_delete,
        name="segment-delete",
    ),
    path(f"{_incident}/audience/people/", views_audience.people, name="people"),
    path(f"{_incident}/audience/people/add/", views_audience.people_add, name="people-add"),
    path(
        f"{_incident}/audience/people/<int:person_id>/remove/",
        views_audience.person_remove,
        name="person-remove",
    ),
    # --- Contact: dashboard, follow-up queue, one person's contact, reconciliation ---
    path(f"{_incident}/dashboard/", views_dashboard.dashboard, name="dashboard"),
    path(f"{_incident}/dashboard/live/", views_dashboard.dashboard_live, name="dashboard-live"),
    path(f"{_incident}/unconfirmed/", views_dashboard.unconfirmed, name="unconfirmed"),
    path(f"{_incident}/unconfirmed.csv", views_dashboard.unconfirmed_csv, name="unconfirmed-csv"),
    path(f"{_incident}/follow-up/", views_contact.followup, name="followup"),
    path(f"{_incident}/follow-up/bulk/", views_contact.followup_bulk, name="followup-bulk"),
    path(
        f"{_incident}/contact/<int:person_id>/",
        views_contact.contact_person,
        name="contact-person",
    ),
    path(
        f"{_incident}/contact/<int:person_id>/record/",
        views_contact.contact_record,
        name="contact-record",
    ),
    path(
        f"{_incident}/contact/<int:person_id>/unreachable/",
        views_contact.contact_unreachable,
        name="contact-unreachable",
    ),
    path(
        f"{_incident}/contact/<int:person_id>/waive/",
        views_contact.contact_waive,
        name="contact-waive",
    ),
    path(
        f"{_incident}/contact/<int:person_id>/assign/",
        views_contact.contact_assign,
        name="contact-assign",
    ),
    # --- Send log imports ---
    path("sendlog/imports/", views_sendlog.sendlog_imports, name="sendlog-imports"),
    path(
        "sendlog/imports/upload/",
        views_sendlog.sendlog_import_start,
        name="sendlog-import-start",
    ),
    path(
        "sendlog/imports/<int:import_id>/",
        views_sendlog.sendlog_import,
        name="sendlog-import",
    ),
    path(
        "sendlog/imports/<int:import_id>/errors.csv",
        views_sendlog.sendlog_import_errors,
        name="sendlog-import-errors",
    ),
    # --- Evidence packs (incidents/urls_export.py) ---
    path("", include("incidents.urls_export")),
]
