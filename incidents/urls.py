from django.urls import path

from incidents import views

app_name = "incidents"

urlpatterns = [
    path("", views.incident_list, name="list"),
    path("incidents/new/", views.incident_create, name="create"),
    path("incidents/<str:reference>/", views.incident_detail, name="detail"),
    path("incidents/<str:reference>/edit/", views.incident_edit, name="edit"),
    path("incidents/<str:reference>/transition/", views.incident_transition, name="transition"),
    path("incidents/<str:reference>/notes/", views.incident_add_note, name="add-note"),
]
