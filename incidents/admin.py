"""The back office for the Admin role. Every change made here is audited like any other."""

from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.forms.models import model_to_dict
from rest_framework.authtoken.models import TokenProxy

from incidents import audit, services
from incidents.actors import Actor
from incidents.models import (
    AffectedPerson,
    AudienceQuery,
    AuditEntry,
    ContactRecord,
    ContactSnapshot,
    EvidenceExport,
    Incident,
    LedgerCache,
    LedgerMark,
    ReferenceCounter,
    Segment,
    SendLogEntry,
    SendLogImport,
    TimelineEntry,
)


def _plain_fields(obj, names) -> dict:
    values = model_to_dict(obj, fields=names)
    # Many-to-many values come back as model instances; audit them by primary key.
    return {
        name: [getattr(v, "pk", v) for v in value] if isinstance(value, list | tuple) else value
        for name, value in values.items()
        if name != "password"
    }


class ReadOnlyAdmin(admin.ModelAdmin):
    """For evidence and for rows that change only through services (which audit them)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdminMixin:
    """Writes an audit entry for each add, change and delete done in the admin."""

    def save_model(self, request, obj, form, change):
        before = None
        if change:
            original = type(obj).objects.get(pk=obj.pk)
            before = _plain_fields(original, form.changed_data)
        super().save_model(request, obj, form, change)
        # The admin instance is shared between threads; keep per-request state on the request.
        request._amends_audit_before = before

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj, before = form.instance, getattr(request, "_amends_audit_before", None)
        audit.record(
            by=Actor.from_request(request),
            action=f"admin.{obj._meta.model_name}.{'changed' if change else 'added'}",
            obj=obj,
            before=before,
            after=_plain_fields(obj, form.changed_data),
        )

    def delete_model(self, request, obj):
        audit.record(
            by=Actor.from_request(request),
            action=f"admin.{obj._meta.model_name}.deleted",
            obj=obj,
            before={"repr": str(obj)},
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["reference", "title", "severity", "status", "owner", "created_at"]
    list_filter = ["status", "severity", "personal_data_exposed"]
    search_fields = ["reference", "title", "summary", "original_template", "original_subject"]
    readonly_fields = [
        "reference",
        "status",
        "created_by",
        "created_at",
        "updated_at",
        "resolved_at",
    ]
    date_hierarchy = "created_at"

    def save_model(self, request, obj, form, change):
        # The admin goes through the same services as the UI and the API.
        by = Actor.from_request(request)
        fields = {
            name: form.cleaned_data[name]
            for name in services.EDITABLE_FIELDS
            if name in form.cleaned_data
        }
        if change:
            services.incident_update(incident=obj, by=by, **fields)
        else:
            created = services.incident_open(by=by, **fields)
            obj.pk, obj.reference = created.pk, created.reference

    def has_delete_permission(self, request, obj=None):
        return False  # incidents are evidence; they are resolved, never deleted


@admin.register(TimelineEntry)
class TimelineEntryAdmin(ReadOnlyAdmin):
    list_display = ["incident", "kind", "body", "author", "created_at"]
    list_filter = ["kind"]
    search_fields = ["incident__reference", "body"]
    list_select_related = ["incident", "author"]


@admin.register(SendLogEntry)
class SendLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["message_id", "recipient", "template", "sent_at", "locale", "status", "source"]
    list_filter = ["source", "status", "locale"]
    # Exact look-ups only: a LIKE over millions of rows would stall the back office.
    search_fields = ["=message_id", "=address", "=customer_id", "=template"]
    show_full_result_count = False


@admin.register(SendLogImport)
class SendLogImportAdmin(ReadOnlyAdmin):
    list_display = [
        "file_name",
        "status",
        "rows_read",
        "rows_inserted",
        "rows_rejected",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "file_format"]
    search_fields = ["file_name"]


@admin.register(AudienceQuery)
class AudienceQueryAdmin(ReadOnlyAdmin):
    list_display = [
        "incident",
        "message_count",
        "people_count",
        "people_added",
        "created_by",
        "created_at",
    ]
    list_select_related = ["incident", "created_by"]
    search_fields = ["incident__reference", "list_hash"]


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    list_display = ["incident", "name", "position", "is_default"]
    list_select_related = ["incident"]
    search_fields = ["incident__reference", "name"]


@admin.register(AffectedPerson)
class AffectedPersonAdmin(ReadOnlyAdmin):
    list_display = [
        "incident",
        "address",
        "segment",
        "locale",
        "message_count",
        "source",
        "removed_at",
    ]
    list_filter = ["source", "locale"]
    list_select_related = ["incident", "segment"]
    search_fields = ["=address", "=customer_id", "incident__reference"]
    show_full_result_count = False


@admin.register(ContactRecord)
class ContactRecordAdmin(ReadOnlyAdmin):
    # Changes only through the contact services, which audit every one.
    list_display = ["recorded_at", "incident", "person", "previous_status", "status", "method"]
    list_filter = ["status", "method"]
    list_select_related = ["incident"]
    raw_id_fields = ["person"]
    show_full_result_count = False


@admin.register(ContactSnapshot)
class ContactSnapshotAdmin(ReadOnlyAdmin):
    # The dashboard's stored counts (incidents/dashboard.py): derived, recounted on demand.
    list_display = ["incident", "computed_at", "took_ms", "refresh_requested_at"]
    list_select_related = ["incident"]


@admin.register(EvidenceExport)
class EvidenceExportAdmin(ReadOnlyAdmin):
    # Requested, built and downloaded through the Evidence tab, the API or the command line,
    # each step audited; here only to look at.
    list_display = ["id", "incident", "format", "pii", "status", "created_by", "created_at"]
    list_filter = ["status", "format", "pii"]
    search_fields = ["incident__reference", "sha256"]


@admin.register(LedgerCache)
class LedgerCacheAdmin(ReadOnlyAdmin):
    # Derived: the kept ledger lines (incidents/export/ledger_kept.py), rebuilt on demand.
    # Its lines (LedgerLine) have a composite primary key, which the admin cannot show.
    list_display = ["incident", "fmt", "built_at"]
    list_select_related = ["incident"]


@admin.register(LedgerMark)
class LedgerMarkAdmin(ReadOnlyAdmin):
    list_display = ["fmt", "person_id", "incident_id"]


@admin.register(ReferenceCounter)
class ReferenceCounterAdmin(ReadOnlyAdmin):
    list_display = ["year", "last"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_repr",
        "ip",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "action", "object_repr", "object_id", "hash"]
    list_select_related = ["incident"]


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "last_login"]
    list_filter = ["is_active", "is_staff", "groups"]


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


def _audit_third_party_admin(model) -> None:
    """Re-register another app's admin with auditing mixed in."""
    original = type(admin.site.get_model_admin(model))
    admin.site.unregister(model)
    audited = type(f"Audited{original.__name__}", (AuditedAdminMixin, original), {})
    admin.site.register(model, audited)


for _model in (TokenProxy, AccessAttempt):
    _audit_third_party_admin(_model)

admin.site.site_header = "Amends back office"
admin.site.site_title = "Amends"
