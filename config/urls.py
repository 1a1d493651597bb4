from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from campaigns import metrics, views_verify
from incidents import health

urlpatterns = [
    # First: the busiest URL by far (one request per ESP event for some ESPs) is resolved
    # before Django walks every pattern of the app.
    path("webhooks/", include("campaigns.webhook_urls")),
    path("", include("incidents.urls")),
    path("", include("campaigns.urls")),
    path("api/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path(
        "login/",
        login_not_required(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    # Public: customers check an apology's code (no login, rate-limited).
    path("verify/", views_verify.verify, name="verify"),
    # Prometheus: a bearer token (METRICS_TOKEN) or incidents.view_metrics.
    path("metrics", metrics.metrics_view, name="metrics"),
]
