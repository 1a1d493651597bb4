"""The printable summary of a pack, for a regulator: HTML and PDF from the same figures.

Counts, the completion status, approvals and the timeline; the full detail is
in the pack's CSV or JSON Lines files. The PDF uses the TrueType fonts that ship
inside reportlab (Bitstream Vera), so it needs no system font.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Q
from django.template.loader import render_to_string

from campaigns.models import Approval, Delivery, DeliveryEvent
from incidents.models import AffectedPerson, AuditEntry, Incident
from incidents.models.contact import DONE, ContactStatus


def iso(value) -> str:
    """A time as a person reads it in a report: to the second, in UTC."""
    from datetime import UTC

    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


@dataclass
class Summary:
    incident: Incident
    generated_at: datetime
    generated_by: str
    pii: bool
    reason: str
    head_seq: int
    head_hash: str
    people: dict = field(default_factory=dict)
    by_status: list = field(default_factory=list)
    by_segment: list = field(default_factory=list)
    deliveries: list = field(default_factory=list)
    events: list = field(default_factory=list)
    approvals: list = field(default_factory=list)
    timeline: list = field(default_factory=list)
    timeline_total: int = 0

    @property
    def complete(self) -> bool:
        return self.people["active"] > 0 and self.people["done"] == self.people["active"]

    @property
    def percent_done(self) -> str:
        active = self.people["active"]
        return f"{100 * self.people['done'] / active:.1f}" if active else "0.0"


def build_summary(
    incident: Incident, *, by: str, pii: bool, reason: str, head_seq: int, head_hash: str, now
) -> Summary:
    people = AffectedPerson.objects.filter(incident=incident)
    active = people.filter(removed_at__isnull=True)
    totals = people.aggregate(
        total=Count("id"),
        removed=Count("id", filter=Q(removed_at__isnull=False)),
        done=Count("id", filter=Q(removed_at__isnull=True, contact_status__in=DONE)),
    )
    totals["active"] = totals["total"] - totals["removed"]
    statuses = dict(
        active.order_by()
        .values_list("contact_status")
        .annotate(n=Count("id"))
        .values_list("contact_status", "n")
    )
    summary = Summary(
        incident=incident,
        generated_at=now,
        generated_by=by,
        pii=pii,
        reason=reason,
        head_seq=head_seq,
        head_hash=head_hash,
        people=totals,
        by_status=[(s.label, statuses.get(s.value, 0)) for s in ContactStatus],
    )
    summary.by_segment = list(
        active.order_by()
        .values("segment__name")
        .annotate(
            people=Count("id"),
            done=Count("id", filter=Q(contact_status__in=DONE)),
        )
        .order_by("segment__name")
    )
    summary.deliveries = list(
        Delivery.objects.filter(incident=incident)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by("status")
    )
    summary.events = list(
        DeliveryEvent.objects.filter(delivery__incident=incident)
        .order_by()
        .values_list("event_type")
        .annotate(n=Count("id"))
        .order_by("event_type")
    )
    summary.approvals = [
        {
            "segment": a.version.message.segment.name,
            "version": a.version.number,
            "hash": a.content_hash,
            "decision": a.get_decision_display(),
            "approver": a.approver.get_username(),
            "comment": a.comment,
            "at": iso(a.created_at),
            "holds": a.content_hash == a.version.compute_hash(),
        }
        for a in Approval.objects.filter(version__message__incident=incident)
        .select_related("version__message__segment", "approver")
        .order_by("created_at", "id")
    ]
    entries = AuditEntry.objects.filter(incident=incident, seq__lte=head_seq).order_by("seq")
    summary.timeline_total = entries.count()
    summary.timeline = [
        {
            "seq": e.seq,
            "at": iso(e.created_at),
            "actor": e.actor_label,
            "action": e.action,
            "object": e.object_repr,
            "hash": e.hash,
        }  # fmt: skip
        for e in entries[: settings.EXPORT_REPORT_MAX_TIMELINE]
    ]
    return summary


def render_html(summary: Summary) -> str:
    return render_to_string(
        "incidents/evidence_report.html",
        {"s": summary, "company": settings.COMPANY_NAME, "generated_at": iso(summary.generated_at)},
    )


# --- PDF ----------------------------------------------------------------------------

_FONTS_READY = False


def _fonts() -> tuple[str, str]:
    global _FONTS_READY
    if not _FONTS_READY:
        import reportlab
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        base = Path(reportlab.__file__).parent / "fonts"
        pdfmetrics.registerFont(TTFont("Vera", str(base / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont("VeraBd", str(base / "VeraBd.ttf")))
        _FONTS_READY = True
    return "Vera", "VeraBd"


def write_pdf(summary: Summary, path: Path) -> None:
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold = _fonts()
    body = ParagraphStyle("body", fontName=regular, fontSize=9, leading=12)
    small = ParagraphStyle("small", fontName=regular, fontSize=7, leading=9)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=16, leading=20, spaceAfter=6)
    h2 = ParagraphStyle("h2", fontName=bold, fontSize=12, leading=15, spaceBefore=10, spaceAfter=4)
    s, inc = summary, summary.incident

    def p(text, style=body):
        return Paragraph(escape(str(text)), style)

    def table(rows, widths=None, header=True):
        data = [[c if isinstance(c, Paragraph) else p(c, small) for c in row] for row in rows]
        t = Table(data, colWidths=widths, repeatRows=1 if header else 0)
        style = [
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")))
        t.setStyle(TableStyle(style))
        return t

    story = [
        p(f"Evidence pack: {inc.reference}", h1),
        p(inc.title),
        Spacer(1, 4 * mm),
        table(
            [
                ["Company", settings.COMPANY_NAME],
                ["Incident", f"{inc.reference}: {inc.title}"],
                ["Severity / status", f"{inc.get_severity_display()} / {inc.get_status_display()}"],
                ["Opened", iso(inc.created_at)],
                ["Resolved", iso(inc.resolved_at) or "not resolved"],
                ["Regulator notified", iso(inc.regulator_notified_at) or "no"],
                ["Generated", f"{iso(s.generated_at)} by {s.generated_by}"],
                ["Addresses", "included (reason: " + s.reason + ")" if s.pii else "pseudonymised"],
                ["Audit chain head", f"#{s.head_seq} {s.head_hash}"],
            ],
            widths=[45 * mm, 125 * mm],
            header=False,
        ),
        p("Completion", h2),
        p(
            f"{s.people['done']:,} of {s.people['active']:,} affected people contacted or "
            f"waived ({s.percent_done}%): "
            + ("complete." if s.complete else "not complete.")
            + f" {s.people['removed']:,} removed from the list with a reason."
        ),
        table([["Contact status", "People"], *s.by_status], widths=[60 * mm, 30 * mm]),
        Spacer(1, 3 * mm),
        table(
            [["Segment", "People", "Contacted or waived"]]
            + [[r["segment__name"], r["people"], r["done"]] for r in s.by_segment],
            widths=[80 * mm, 30 * mm, 40 * mm],
        ),
        p("Deliveries and ESP events", h2),
        table([["Delivery status", "Count"], *s.deliveries], widths=[60 * mm, 30 * mm]),
        Spacer(1, 3 * mm),
        table([["ESP event", "Count"], *s.events], widths=[60 * mm, 30 * mm]),
        p("Approvals", h2),
        table(
            [["When", "Segment", "Version", "Decision", "By", "Version hash", "Comment"]]
            + [
                [
                    a["at"],
                    a["segment"],
                    a["version"],
                    a["decision"],
                    a["approver"],
                    a["hash"][:16] + ("…" if a["holds"] else "… (no longer matches)"),
                    a["comment"],
                ]
                for a in s.approvals
            ],  # fmt: skip
            widths=[30 * mm, 25 * mm, 13 * mm, 17 * mm, 20 * mm, 30 * mm, 40 * mm],
        ),
        p(f"Timeline ({s.timeline_total:,} audit entries)", h2),
        table(
            [["#", "When (UTC)", "Who", "Action", "Object", "Hash"]]
            + [
                [t["seq"], t["at"], t["actor"], t["action"], t["object"], t["hash"][:12] + "…"]
                for t in s.timeline
            ],
            widths=[12 * mm, 33 * mm, 25 * mm, 35 * mm, 45 * mm, 25 * mm],
        ),
    ]
    if s.timeline_total > len(s.timeline):
        story.append(p(f"The first {len(s.timeline):,} entries; the timeline file has all."))
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Evidence pack {inc.reference}",
        author=settings.COMPANY_NAME,
        invariant=1,  # no random document id or timestamp: same input, same bytes
    )
    doc.build(story)
