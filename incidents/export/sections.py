"""The pack's smaller files: timeline, approvals, approved content, queries and campaigns.

Each section is a header and an iterator of rows of plain values (timestamps
already as UTC ISO text), written as CSV or JSON Lines by incidents.export.files.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from campaigns.models import Approval, Campaign, MessageVersion
from incidents.export.files import iso
from incidents.models import AudienceQuery, AuditEntry, Incident


@dataclass(frozen=True)
class Section:
    name: str
    header: list[str]
    rows: Iterator[list]


TIMELINE_HEADER = [
    "seq",
    "created_at",
    "actor_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "incident_id",
    "before",
    "after",
    "ip",
    "prev_hash",
    "hash",
]


def timeline_entries(incident: Incident, *, head_seq: int):
    return AuditEntry.objects.filter(incident=incident, seq__lte=head_seq).order_by("seq")


def timeline(incident: Incident, *, head_seq: int) -> Section:
    """Every audit entry of the incident up to the chain head, with its chain fields.

    Each row carries what its hash covers, so a reader can recompute the hash
    (incidents.models.audit.AuditEntry.canonical_content) from the file alone.
    """

    def rows():
        for e in timeline_entries(incident, head_seq=head_seq).iterator(chunk_size=2000):
            yield [
                e.seq,
                iso(e.created_at),
                e.actor_id,
                e.actor_label,
                e.action,
                e.object_type,
                e.object_id,
                e.object_repr,
                e.incident_id,
                e.before,
                e.after,
                e.ip,
                e.prev_hash,
                e.hash,
            ]

    return Section("timeline", TIMELINE_HEADER, rows())


def _versions(incident: Incident):
    return MessageVersion.objects.filter(message__incident=incident).select_related(
        "message__segment", "author"
    )


def approvals(incident: Incident) -> Section:
    """Who approved or rejected which version hash, when; and whether the hash still holds."""
    header = [
        "approval_id",
        "segment",
        "message_id",
        "version_id",
        "version_number",
        "decision",
        "approver",
        "comment",
        "approved_hash",
        "version_hash",
        "hash_still_matches",
        "created_at",
    ]

    def rows():
        found = (
            Approval.objects.filter(version__message__incident=incident)
            .select_related("version__message__segment", "approver")
            .order_by("created_at", "id")
        )
        for a in found:
            v = a.version
            yield [
                a.pk,
                v.message.segment.name,
                v.message_id,
                v.pk,
                v.number,
                a.decision,
                a.approver.get_username(),
                a.comment,
                a.content_hash,
                v.content_hash,
                a.content_hash == v.compute_hash(),
                iso(a.created_at),
            ]

    return Section("approvals", header, rows())


def content(incident: Incident) -> Section:
    """The exact text of every approved version, one row per locale."""
    header = [
        "version_id",
        "segment",
        "version_number",
        "content_hash",
        "approved_by",
        "locale",
        "subject",
        "text",
        "html",
        "sender_name",
        "sender_address",
        "reply_to",
        "fallback_locale",
        "author",
        "created_at",
    ]

    def rows():
        approved = (
            Approval.objects.filter(
                version__message__incident=incident, decision=Approval.Decision.APPROVED
            )
            .select_related("approver")
            .order_by("created_at", "id")
        )
        by_version: dict[int, list[str]] = {}
        for a in approved:
            by_version.setdefault(a.version_id, []).append(a.approver.get_username())
        for v in _versions(incident).filter(pk__in=by_version).order_by("message_id", "number"):
            for locale in v.locales:
                part = v.content[locale]
                yield [
                    v.pk,
                    v.message.segment.name,
                    v.number,
                    v.content_hash,
                    by_version[v.pk],
                    locale,
                    part.get("subject", ""),
                    part.get("text", ""),
                    part.get("html", ""),
                    v.sender_name,
                    v.sender_address,
                    v.reply_to,
                    v.fallback_locale,
                    v.author.get_username(),
                    iso(v.created_at),
                ]

    return Section("content", header, rows())


def queries(incident: Incident) -> Section:
    """The frozen audience queries the ledger's query_id points to."""
    header = [
        "query_id",
        "created_at",
        "created_by",
        "status",
        "filters",
        "message_count",
        "people_count",
        "people_added",
        "list_hash",
    ]

    def rows():
        found = AudienceQuery.objects.filter(incident=incident).select_related("created_by")
        for q in found.order_by("created_at", "id"):
            yield [
                q.pk,
                iso(q.created_at),
                q.created_by.get_username() if q.created_by else "",
                q.status,
                q.filters,
                q.message_count,
                q.people_count,
                q.people_added,
                q.list_hash,
            ]

    return Section("queries", header, rows())


def campaigns(incident: Incident) -> Section:
    """Every send: which version (and hash) went to which segment, when and by whom."""
    header = [
        "campaign_id",
        "segment",
        "version_id",
        "content_hash",
        "status",
        "is_resend",
        "resend_reason",
        "launched_by",
        "launched_at",
        "finished_at",
    ]

    def rows():
        found = Campaign.objects.filter(incident=incident).select_related("segment", "launched_by")
        for c in found.order_by("created_at", "id"):
            yield [
                c.pk,
                c.segment.name,
                c.version_id,
                c.content_hash,
                c.status,
                c.is_resend,
                c.resend_reason,
                c.launched_by.get_username() if c.launched_by else "",
                iso(c.launched_at) or None,
                iso(c.finished_at) or None,
            ]

    return Section("campaigns", header, rows())
