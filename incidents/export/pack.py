"""Writing one evidence pack into a directory, with its manifest.

A pack holds, for csv and jsonl: timeline, ledger, approvals, content, queries
and campaigns in that format, plus report.html; for pdf: report.pdf and
report.html. manifest.json lists each file's SHA-256, size and rows, and the
audit chain's head (seq and hash) read before anything was written, so every
entry in the pack is at or before that head.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from incidents.export import ledger, ledger_kept, report, sections
from incidents.export.files import FileEntry, HashedFile, iso, writer_for
from incidents.models import AuditEntry, Incident
from incidents.models.audit import GENESIS_HASH

MANIFEST = "manifest.json"
PACK_FORMAT = "amends-evidence-pack/1"
FORMATS = ("csv", "jsonl", "pdf")
PSEUDONYM_NOTE = (
    "person_ref is 'p_' + the first 24 hex digits of HMAC-SHA256(PSEUDONYM_KEY, normalised "
    "address): the same person has the same reference in every pack and audit entry."
)


@dataclass(frozen=True)
class PackResult:
    directory: Path
    manifest: dict
    manifest_sha256: str
    people: int
    size: int


def chain_head() -> tuple[int, str]:
    head = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head else (0, GENESIS_HASH)


def write_pack(
    *,
    incident: Incident,
    directory: Path,
    fmt: str,
    pii: bool,
    reason: str,
    by_label: str,
    on_progress: Callable[..., None] = lambda rows, busy=False: None,
) -> PackResult:
    """Write the pack for `incident` into `directory` (created; must be empty or new)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown pack format {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: a pack goes into a directory of its own")
    now = timezone.now()
    head_seq, head_hash = chain_head()
    entries: list[FileEntry] = []
    people = 0

    if fmt in ("csv", "jsonl"):
        for section in (
            sections.timeline(incident, head_seq=head_seq),
            sections.queries(incident),
            sections.campaigns(incident),
            sections.approvals(incident),
            sections.content(incident),
        ):
            out = HashedFile(directory / f"{section.name}.{fmt}")
            writer_for(fmt, out, section.header).write_rows(section.rows)
            entries.append(out.close(rows=out.rows))
        out = HashedFile(directory / f"ledger.{fmt}")
        people = ledger.write_ledger(incident, out, fmt=fmt, pii=pii, on_progress=on_progress)
        entries.append(out.close(rows=people))
        ledger_kept.keep_later(incident, fmt=fmt, pii=pii)  # ready for the next export

    summary = report.build_summary(
        incident,
        by=by_label,
        pii=pii,
        reason=reason,
        head_seq=head_seq,
        head_hash=head_hash,
        now=now,
    )
    if fmt == "pdf":
        people = summary.people["total"]
        report.write_pdf(summary, directory / "report.pdf")
        entries.append(_entry(directory / "report.pdf"))
    (directory / "report.html").write_text(report.render_html(summary), encoding="utf-8")
    entries.append(_entry(directory / "report.html"))

    manifest = {
        "format": PACK_FORMAT,
        "incident": {"id": incident.pk, "reference": incident.reference, "title": incident.title},
        "generated_at": iso(now),
        "generated_by": by_label,
        "pack_format": fmt,
        "pseudonymised": not pii,
        "reason": reason,
        "audit_head": {"seq": head_seq, "hash": head_hash},
        "people": people,
        "files": [e.as_dict() for e in entries],
        "pseudonym": PSEUDONYM_NOTE if not pii else "",
        "company": settings.COMPANY_NAME,
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (directory / MANIFEST).write_bytes(data)
    size = sum(e.bytes for e in entries) + len(data)
    return PackResult(directory, manifest, hashlib.sha256(data).hexdigest(), people, size)


def _entry(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return FileEntry(path.name, digest.hexdigest(), path.stat().st_size, None)


def file_sha256(path: Path) -> str:
    return _entry(Path(path)).sha256
