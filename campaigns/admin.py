"""Back-office views of messages, versions, decisions, test sends and the sandbox outbox.

All read-only: versions and decisions are evidence and never change, and a
message changes only through services.version_create (which audits it).
"""

from django.contrib import admin

from campaigns.models import (
    Approval,
    Campaign,
    Delivery,
    DeliveryEvent,
    Message,
    MessageVersion,
    OutboxMessage,
    SendClaim,
    Suppression,
    TestSend,
)
from incidents.admin import ReadOnlyAdmin


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    # Suppressions change through the Suppressions page and the API, which audit them.
    list_display = ["address", "reason", "source", "created_by", "created_at"]
    list_filter = ["reason", "source"]
    search_fields = ["=address"]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["incident", "segment", "version_count", "sender_address", "updated_at"]
    list_select_related = ["incident", "segment"]
    search_fields = ["incident__reference", "segment__name"]


@admin.register(MessageVersion)
class MessageVersionAdmin(ReadOnlyAdmin):
    list_display = ["message", "number", "author", "created_at", "content_hash"]
    list_select_related = ["message", "author"]
    search_fields = ["message__incident__reference", "content_hash"]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ["version", "approver", "decision", "created_at", "content_hash"]
    list_filter = ["decision"]
    list_select_related = ["version", "approver"]


@admin.register(TestSend)
class TestSendAdmin(ReadOnlyAdmin):
    list_display = ["version", "by", "address_count", "message_count", "created_at"]
    list_select_related = ["version", "by"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "subject", "from_email", "mailer", "message_id"]
    search_fields = ["subject", "message_id"]
    date_hierarchy = "created_at"


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    # Campaigns change only through the sending services, which audit every move.
    list_display = ["incident", "segment", "status", "launched_by", "launched_at", "finished_at"]
    list_filter = ["status", "is_resend"]
    list_select_related = ["incident", "segment", "launched_by"]
    search_fields = ["incident__reference"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "status", "attempts", "esp_message_id", "sent_at", "updated_at"]
    list_filter = ["status", "resend"]
    list_select_related = ["campaign"]
    search_fields = ["=esp_message_id", "=verification_code"]
    raw_id_fields = ["person", "claim"]


@admin.register(SendClaim)
class SendClaimAdmin(ReadOnlyAdmin):
    # A send job's claim: its lease and how far it handed its rows to the ESP.
    list_display = ["campaign", "lease_until", "handed_through", "revoked_at", "created_at"]
    list_select_related = ["campaign"]
    show_full_result_count = False


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    # ESP events are evidence as received: never edited.
    list_display = ["received_at", "esp", "event_type", "message_id", "outcome", "applied_at"]
    list_filter = ["esp", "event_type", "outcome"]
    search_fields = ["=message_id", "=event_key"]
    raw_id_fields = ["delivery"]
    show_full_result_count = False
