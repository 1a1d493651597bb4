"""URLs under /api/. Names are un-namespaced and start with "api-"."""

from django.urls import path, re_path

from campaigns.api import campaigns, messages, suppressions, versions
from incidents.api import audience, contact, contact_bulk, contact_reports, export, sendlog
from incidents.api import incidents as api

INCIDENT = "incidents/<str:reference>/"

urlpatterns = [
    path("auth/token/", api.TokenApi.as_view(), name="api-token"),
    path("incidents/", api.IncidentListApi.as_view(), name="api-incident-list"),
    path(INCIDENT, api.IncidentDetailApi.as_view(), name="api-incident-detail"),
    path(
        f"{INCIDENT}transition/",
        api.IncidentTransitionApi.as_view(),
        name="api-incident-transition",
    ),
    path(
        f"{INCIDENT}timeline/",
        api.IncidentTimelineApi.as_view(),
        name="api-incident-timeline",
    ),
    # --- Audience ---------------------------------------------------------------
    path(f"{INCIDENT}audience/", audience.AudienceSummaryApi.as_view(), name="api-audience"),
    path(
        f"{INCIDENT}audience/preview/",
        audience.AudiencePreviewApi.as_view(),
        name="api-audience-preview",
    ),
    path(
        f"{INCIDENT}audience/freeze/",
        audience.AudienceFreezeApi.as_view(),
        name="api-audience-freeze",
    ),
    path(
        f"{INCIDENT}audience/queries/",
        audience.AudienceQueryListApi.as_view(),
        name="api-audience-queries",
    ),
    path(f"{INCIDENT}affected/", audience.AffectedListApi.as_view(), name="api-affected-list"),
    path(
        f"{INCIDENT}affected/import/",
        audience.AffectedImportApi.as_view(),
        name="api-affected-import",
    ),
    path(
        f"{INCIDENT}affected/<int:pk>/remove/",
        audience.AffectedRemoveApi.as_view(),
        name="api-affected-remove",
    ),
    path(f"{INCIDENT}segments/", audience.SegmentListApi.as_view(), name="api-segment-list"),
    path(
        f"{INCIDENT}segments/<int:pk>/",
        audience.SegmentDetailApi.as_view(),
        name="api-segment-detail",
    ),
    # --- Send log -----------------------------------------------------------------
    path("sendlog/", sendlog.SendLogListApi.as_view(), name="api-sendlog-list"),
    path("sendlog/batch/", sendlog.SendLogBatchApi.as_view(), name="api-sendlog-batch"),
    path(
        "sendlog/imports/", sendlog.SendLogImportListApi.as_view(), name="api-sendlog-import-list"
    ),
    path(
        "sendlog/imports/<int:pk>/",
        sendlog.SendLogImportDetailApi.as_view(),
        name="api-sendlog-import-detail",
    ),
    path(
        "sendlog/imports/<int:pk>/error-report/",
        sendlog.SendLogImportErrorReportApi.as_view(),
        name="api-sendlog-import-error-report",
    ),
    # --- Suppressions -------------------------------------------------------------
    path("suppressions/", suppressions.SuppressionListApi.as_view(), name="api-suppression-list"),
    path(
        "suppressions/import/",
        suppressions.SuppressionImportApi.as_view(),
        name="api-suppression-import",
    ),
    path(
        "suppressions/<int:pk>/",
        suppressions.SuppressionDetailApi.as_view(),
        name="api-suppression-detail",
    ),
    # --- Messages: each segment's apology, its versions, preview and approval ----------
    path(f"{INCIDENT}messages/", messages.MessageListApi.as_view(), name="api-message-list"),
    path(
        f"{INCIDENT}messages/<int:pk>/versions/",
        messages.VersionListApi.as_view(),
        name="api-message-versions",
    ),
    path("versions/<int:pk>/", versions.VersionDetailApi.as_view(), name="api-version-detail"),
    path("versions/<int:pk>/diff/", versions.VersionDiffApi.as_view(), name="api-version-diff"),
    path(
        "versions/<int:pk>/preview/",
        versions.VersionPreviewApi.as_view(),
        name="api-version-preview",
    ),
    path(
        "versions/<int:pk>/test-send/",
        versions.VersionTestSendApi.as_view(),
        name="api-version-test-send",
    ),
    path(
        "versions/<int:pk>/request-approval/",
        versions.VersionRequestApprovalApi.as_view(),
        name="api-version-request-approval",
    ),
    path(
        "versions/<int:pk>/approve/",
        versions.VersionApproveApi.as_view(),
        name="api-version-approve",
    ),
    path(
        "versions/<int:pk>/reject/", versions.VersionRejectApi.as_view(), name="api-version-reject"
    ),
    # --- Sending: campaigns, their control, their deliveries ---------------------------
    path(f"{INCIDENT}campaigns/", campaigns.CampaignListApi.as_view(), name="api-campaign-list"),
    path("campaigns/<int:pk>/", campaigns.CampaignDetailApi.as_view(), name="api-campaign-detail"),
    path(
        "campaigns/<int:pk>/pause/", campaigns.CampaignPauseApi.as_view(), name="api-campaign-pause"
    ),
    path(
        "campaigns/<int:pk>/resume/",
        campaigns.CampaignResumeApi.as_view(),
        name="api-campaign-resume",
    ),
    path(
        "campaigns/<int:pk>/cancel/",
        campaigns.CampaignCancelApi.as_view(),
        name="api-campaign-cancel",
    ),
    path(
        "campaigns/<int:pk>/top-up/",
        campaigns.CampaignTopUpApi.as_view(),
        name="api-campaign-top-up",
    ),
    path(
        "campaigns/<int:pk>/deliveries/",
        campaigns.CampaignDeliveriesApi.as_view(),
        name="api-campaign-deliveries",
    ),
    path(
        "deliveries/<int:pk>/resolve/",
        campaigns.DeliveryResolveApi.as_view(),
        name="api-delivery-resolve",
    ),
    # --- Contact: dashboard, completion gate, follow-up, reconciliation ---------------
    path(f"{INCIDENT}dashboard/", contact_reports.DashboardApi.as_view(), name="api-dashboard"),
    path(f"{INCIDENT}completion/", contact_reports.CompletionApi.as_view(), name="api-completion"),
    path(
        f"{INCIDENT}unconfirmed/", contact_reports.UnconfirmedApi.as_view(), name="api-unconfirmed"
    ),
    path(
        f"{INCIDENT}contact/people/",
        contact.ContactPeopleApi.as_view(),
        name="api-contact-people",
    ),
    path(
        f"{INCIDENT}contact/people/<int:pk>/",
        contact.ContactPersonApi.as_view(),
        name="api-contact-person",
    ),
    path(
        f"{INCIDENT}contact/people/<int:pk>/record/",
        contact.ContactRecordApi.as_view(),
        name="api-contact-record",
    ),
    path(
        f"{INCIDENT}contact/people/<int:pk>/unreachable/",
        contact.ContactUnreachableApi.as_view(),
        name="api-contact-unreachable",
    ),
    path(
        f"{INCIDENT}contact/people/<int:pk>/waive/",
        contact.ContactWaiveApi.as_view(),
        name="api-contact-waive",
    ),
    path(
        f"{INCIDENT}contact/people/<int:pk>/assign/",
        contact.ContactAssignApi.as_view(),
        name="api-contact-assign",
    ),
    path(
        f"{INCIDENT}contact/bulk/",
        contact_bulk.ContactBulkApi.as_view(),
        name="api-contact-bulk",
    ),
    path(
        f"{INCIDENT}contact/bulk-waive/",
        contact_bulk.ContactBulkWaiveApi.as_view(),
        name="api-contact-bulk-waive",
    ),
    # --- Evidence packs: request, poll, download -------------------------------------
    path(f"{INCIDENT}exports/", export.ExportListApi.as_view(), name="api-export-list"),
    path("exports/<int:pk>/", export.ExportDetailApi.as_view(), name="api-export-detail"),
    path(
        "exports/<int:pk>/download/",
        export.ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
    # --- Schema and docs ----------------------------------------------------------
    path("schema/", api.SchemaApi.as_view(), name="api-schema"),
    path("docs/", api.docs, name="api-docs"),
    # Keep last: any other /api/ path answers 404 in the API's error format.
    re_path(r"^", api.NotFoundApi.as_view(), name="api-not-found"),
]
