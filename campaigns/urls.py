from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("suppressions/", views.suppression_list, name="suppressions"),
    path("suppressions/add/", views.suppression_add, name="suppression-add"),
    path("suppressions/import/", views.suppression_import, name="suppression-import"),
    path(
        "suppressions/<int:suppression_id>/lift/",
        views.suppression_lift,
        name="suppression-lift",
    ),
]
