"""Checking a pack: its files against its manifest, and its manifest against the database.

A pack verifies when
1. every file the manifest lists is there, with its SHA-256 and size, and no other file is;
2. the database's audit chain verifies (incidents.audit.verify_chain);
3. the chain's entry at the manifest's head seq has the manifest's head hash;
4. the manifest itself is the one the trail recorded when the pack was made
   (the `evidence.exported` entry holds its SHA-256), so a pack whose files and
   manifest were both rewritten still fails;
5. each timeline row's hash is recomputed from the row and equals the trail's.
"""

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from incidents import audit
from incidents.export.csvsafe import unescape_cell
from incidents.export.pack import MANIFEST, file_sha256
from incidents.models import AuditEntry


@dataclass
class VerifyReport:
    directory: Path
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    timeline_checked: int = 0
    manifest: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_pack(directory: Path) -> VerifyReport:
    directory = Path(directory)
    result = VerifyReport(directory)
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
        result.manifest = manifest
    except (OSError, ValueError) as exc:
        result.problems.append(f"{MANIFEST} cannot be read: {exc}")
        return result
    _check_files(directory, manifest, result)
    _check_chain(manifest, hashlib.sha256(raw).hexdigest(), result)
    for entry in manifest.get("files", []):
        if entry["name"].startswith("timeline."):
            _check_timeline(directory / entry["name"], result)
    return result


def _check_files(directory: Path, manifest: dict, result: VerifyReport) -> None:
    listed = set()
    for entry in manifest.get("files", []):
        name = entry["name"]
        listed.add(name)
        target = directory / name
        if Path(name).name != name or not target.is_file():
            result.problems.append(f"{name} is missing")
            continue
        if target.stat().st_size != entry["bytes"]:
            result.problems.append(
                f"{name} has {target.stat().st_size} bytes, not {entry['bytes']}"
            )
        elif file_sha256(target) != entry["sha256"]:
            result.problems.append(f"{name} does not match its SHA-256 in the manifest (edited)")
        result.files_checked += 1
    extra = sorted(p.name for p in directory.iterdir() if p.name not in listed | {MANIFEST})
    if extra:
        result.problems.append(f"files not in the manifest: {', '.join(extra)}")


def _check_chain(manifest: dict, manifest_sha: str, result: VerifyReport) -> None:
    chain = audit.verify_chain()
    if not chain.ok:
        broken = chain.broken
        result.problems.append(f"the audit chain is broken at entry #{broken.seq}: {broken.reason}")
    head = manifest.get("audit_head") or {}
    seq, expected = head.get("seq"), head.get("hash")
    if seq:
        found = AuditEntry.objects.filter(seq=seq).values_list("hash", flat=True).first()
        if found is None:
            result.problems.append(f"the audit trail has no entry #{seq} (the pack's head)")
        elif found != expected:
            result.problems.append(f"audit entry #{seq} no longer has the pack's head hash")
    recorded = AuditEntry.objects.filter(
        action="evidence.exported", after__manifest_sha256=manifest_sha
    ).exists()
    if not recorded:
        result.problems.append(
            "the audit trail records no export with this manifest's SHA-256 (manifest replaced?)"
        )


def _timeline_rows(path: Path):
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield {k: unescape_cell(v) for k, v in row.items()}, True
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line), False


def _as_entry(row: dict, from_csv: bool) -> AuditEntry:
    def num(value):
        return int(value) if value not in (None, "") else None

    def js(value):
        if not from_csv:
            return value
        return json.loads(value) if value != "" else None

    return AuditEntry(
        seq=int(row["seq"]),
        created_at=datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")),
        actor_id=num(row["actor_id"]),
        actor_label=row["actor"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        object_repr=row["object_repr"],
        incident_id=num(row["incident_id"]),
        before=js(row["before"]),
        after=js(row["after"]),
        ip=row["ip"] or None,
        prev_hash=row["prev_hash"],
    )


def _check_timeline(path: Path, result: VerifyReport) -> None:
    if not path.is_file():
        return
    try:
        for row, from_csv in _timeline_rows(path):
            entry = _as_entry(row, from_csv)
            if entry.compute_hash() != row["hash"]:
                result.problems.append(f"timeline entry #{entry.seq} does not match its hash")
                return
            stored = AuditEntry.objects.filter(seq=entry.seq).values_list("hash", flat=True)
            if stored.first() != row["hash"]:
                result.problems.append(f"timeline entry #{entry.seq} differs from the audit trail")
                return
            result.timeline_checked += 1
    except (ValueError, KeyError) as exc:
        result.problems.append(f"{path.name} cannot be read: {exc}")
