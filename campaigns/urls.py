from django.urls import path

from campaigns import views, views_campaigns, views_messages

app_name = "campaigns"

_message = "incidents/<str:reference>/messages/<int:segment_id>"
_version = f"{_message}/versions/<int:number>"
_sending = "incidents/<str:reference>/sending"
_campaign = f"{_sending}/<int:campaign_id>"

urlpatterns = [
    path("suppressions/", views.suppression_list, name="suppressions"),
    path("suppressions/add/", views.suppression_add, name="suppression-add"),
    path("suppressions/import/", views.suppression_import, name="suppression-import"),
    path(
        "suppressions/<int:suppression_id>/lift/",
        views.suppression_lift,
        name="suppression-lift",
    ),
    # --- Messages: draft per segment, compare, preview, test, approve ---
    path(
        "incidents/<str:reference>/messages/",
        views_messages.message_list,
        name="messages",
    ),
    path(f"{_message}/", views_messages.message_detail, name="message"),
    path(f"{_message}/edit/", views_messages.message_edit, name="message-edit"),
    path(f"{_message}/compare/", views_messages.message_diff, name="message-diff"),
    path(f"{_version}/", views_messages.version_detail, name="version"),
    path(f"{_version}/preview/", views_messages.version_preview, name="version-preview"),
    path(f"{_version}/test-send/", views_messages.version_test_send, name="version-test-send"),
    path(
        f"{_version}/request-approval/",
        views_messages.version_request_approval,
        name="version-request-approval",
    ),
    path(f"{_version}/approve/", views_messages.version_approve, name="version-approve"),
    path(f"{_version}/reject/", views_messages.version_reject, name="version-reject"),
    path("outbox/", views_messages.outbox, name="outbox"),
    path("outbox/<int:message_id>/", views_messages.outbox_message, name="outbox-message"),
    # --- Sending: launch, watch, pause/resume/cancel, top up, decide on uncertain deliveries ---
    path(f"{_sending}/", views_campaigns.sending, name="sending"),
    path(
        f"{_sending}/segments/<int:segment_id>/versions/<int:number>/launch/",
        views_campaigns.campaign_launch,
        name="campaign-launch",
    ),
    path(f"{_campaign}/", views_campaigns.campaign_detail, name="campaign"),
    path(f"{_campaign}/progress/", views_campaigns.campaign_progress, name="campaign-progress"),
    path(f"{_campaign}/pause/", views_campaigns.campaign_pause, name="campaign-pause"),
    path(f"{_campaign}/resume/", views_campaigns.campaign_resume, name="campaign-resume"),
    path(f"{_campaign}/cancel/", views_campaigns.campaign_cancel, name="campaign-cancel"),
    path(f"{_campaign}/top-up/", views_campaigns.campaign_top_up, name="campaign-top-up"),
    path(f"{_campaign}/uncertain/", views_campaigns.campaign_uncertain, name="campaign-uncertain"),
    path(
        f"{_campaign}/deliveries/", views_campaigns.campaign_deliveries, name="campaign-deliveries"
    ),
    path(
        f"{_campaign}/deliveries/<int:delivery_id>/resolve/",
        views_campaigns.delivery_resolve,
        name="delivery-resolve",
    ),
]
