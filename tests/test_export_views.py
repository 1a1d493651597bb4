"""Evidence packs through the API, the Evidence tab and the command line: access, jobs, expiry."""

import io
import zipfile
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.export.verify import verify_pack
from incidents.models import AuditEntry, EvidenceExport
from tests.test_export import ADDRESSES, make_evidence_incident


@pytest.fixture(autouse=True)
def _exports_in_tmp(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    cache.clear()  # API throttle counters outlive a test's database
    yield
    cache.clear()


@pytest.fixture
def evidence(incident, support_sam, comms_cleo):
    make_evidence_incident(incident, support_sam, comms_cleo)
    return incident


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _unzip(data: bytes, into) -> object:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(into)
        [top] = {name.split("/")[0] for name in zf.namelist()}
    return into / top


def _actions(incident) -> list[str]:
    return list(
        AuditEntry.objects.filter(incident=incident, action__startswith="evidence.")
        .order_by("seq")
        .values_list("action", flat=True)
    )


# --- API ----------------------------------------------------------------------------------


def test_an_auditor_exports_polls_and_downloads_a_verifiable_pack(
    evidence, auditor_abe, run_jobs, tmp_path
):
    api = _api(auditor_abe)
    with run_jobs():
        created = api.post(
            f"/api/incidents/{evidence.reference}/exports/", {"format": "csv"}, format="json"
        )
    assert created.status_code == 202, created.content
    assert created["Location"].endswith(f"/api/exports/{created.json()['id']}/")
    polled = api.get(created["Location"]).json()
    assert polled["status"] == "done" and polled["progress"] == 1.0
    assert polled["pii"] is False and polled["rows_done"] == len(ADDRESSES)
    download = api.get(polled["download"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    pack = _unzip(b"".join(download.streaming_content), tmp_path / "unzipped")
    report = verify_pack(pack)
    assert report.ok, report.problems
    assert report.manifest["audit_head"]["seq"] == polled["head_seq"]
    ledger = (pack / "ledger.csv").read_text().lower()
    assert not any(address in ledger for address in ADDRESSES)
    assert _actions(evidence) == [
        "evidence.export_requested",
        "evidence.exported",
        "evidence.downloaded",
    ]
    listed = api.get(f"/api/incidents/{evidence.reference}/exports/").json()
    assert [e["id"] for e in listed["results"]] == [polled["id"]]


def test_a_pii_export_without_the_permission_is_refused_by_the_api(evidence, auditor_abe):
    response = _api(auditor_abe).post(
        f"/api/incidents/{evidence.reference}/exports/",
        {"format": "csv", "pii": True, "reason": "curious"},
        format="json",
    )
    assert response.status_code == 403
    assert "incidents.export_pii" in response.json()["error"]["message"]
    assert not EvidenceExport.objects.exists() and _actions(evidence) == []


def test_a_pii_export_needs_a_reason(evidence, admin_ada):
    response = _api(admin_ada).post(
        f"/api/incidents/{evidence.reference}/exports/", {"format": "jsonl", "pii": True}
    )
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]
    assert not EvidenceExport.objects.exists()


def test_an_auditor_cannot_download_a_pack_with_addresses(
    evidence, admin_ada, auditor_abe, run_jobs
):
    with run_jobs():
        created = _api(admin_ada).post(
            f"/api/incidents/{evidence.reference}/exports/",
            {"format": "jsonl", "pii": True, "reason": "Regulator asked for the list"},
            format="json",
        )
    assert created.status_code == 202
    export = EvidenceExport.objects.get()
    assert export.status == "done" and export.pii
    assert _api(auditor_abe).get(f"/api/exports/{export.pk}/download/").status_code == 403
    assert _api(admin_ada).get(f"/api/exports/{export.pk}/download/").status_code == 200
    requested = AuditEntry.objects.get(action="evidence.export_requested")
    assert requested.after == {
        "format": "jsonl",
        "pii": True,
        "reason": "Regulator asked for the list",
    }


def test_support_and_comms_cannot_export(evidence, support_sam, comms_cleo):
    for user in (support_sam, comms_cleo):
        response = _api(user).post(
            f"/api/incidents/{evidence.reference}/exports/", {"format": "csv"}, format="json"
        )
        assert response.status_code == 403


def test_an_expired_pack_is_refused_and_its_files_are_deleted(
    evidence, auditor_abe, run_jobs, login
):
    with run_jobs():
        _api(auditor_abe).post(
            f"/api/incidents/{evidence.reference}/exports/", {"format": "pdf"}, format="json"
        )
    export = EvidenceExport.objects.get()
    from incidents.export.services import export_directory, export_zip

    assert export_zip(export).is_file() and export_directory(export).is_dir()
    EvidenceExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert _api(auditor_abe).get(f"/api/exports/{export.pk}/download/").status_code == 410
    client = login(auditor_abe)
    url = reverse("incidents:evidence-download", args=[evidence.reference, export.pk])
    assert client.get(url).status_code == 410
    call_command("expire_exports", stdout=io.StringIO())
    export.refresh_from_db()
    assert export.status == "expired"
    assert not export_zip(export).exists() and not export_directory(export).exists()
    assert _actions(evidence)[-1] == "evidence.expired"
    assert _api(auditor_abe).get(f"/api/exports/{export.pk}/").json()["download"] is None


def test_a_pack_not_built_yet_cannot_be_downloaded(
    evidence, auditor_abe, django_capture_on_commit_callbacks
):
    # The job is queued but not run: the pack is not ready.
    created = _api(auditor_abe).post(
        f"/api/incidents/{evidence.reference}/exports/", {"format": "csv"}, format="json"
    )
    export_id = created.json()["id"]
    response = _api(auditor_abe).get(f"/api/exports/{export_id}/download/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_ready"


# --- The Evidence tab ---------------------------------------------------------------------


def test_the_evidence_tab_requests_a_pack_and_offers_it_for_download(
    evidence, auditor_abe, login, run_jobs
):
    client = login(auditor_abe)
    url = reverse("incidents:evidence", args=[evidence.reference])
    page = client.get(url)
    assert page.status_code == 200
    assert b"Include addresses" not in page.content  # an auditor is not offered addresses
    with run_jobs():
        response = client.post(url, {"format": "jsonl"})
    assert response.status_code == 302
    export = EvidenceExport.objects.get()
    assert export.status == "done" and not export.pii
    page = client.get(url).content.decode()
    assert "Ready" in page and export.sha256[:16] in page
    download = reverse("incidents:evidence-download", args=[evidence.reference, export.pk])
    assert download in page
    assert client.get(download).status_code == 200
    row = client.get(reverse("incidents:evidence-export", args=[evidence.reference, export.pk]))
    assert row.status_code == 200 and b"hx-get" not in row.content  # done: no more polling


def test_the_evidence_tab_refuses_addresses_to_an_auditor(evidence, auditor_abe, login):
    client = login(auditor_abe)
    url = reverse("incidents:evidence", args=[evidence.reference])
    response = client.post(url, {"format": "csv", "pii": "on", "reason": "please"})
    assert response.status_code == 403
    assert not EvidenceExport.objects.exists()


def test_an_admin_exports_addresses_from_the_tab_only_with_a_reason(
    evidence, admin_ada, login, run_jobs
):
    client = login(admin_ada)
    url = reverse("incidents:evidence", args=[evidence.reference])
    assert b"Include addresses" in client.get(url).content
    response = client.post(url, {"format": "csv", "pii": "on", "reason": " "})
    assert response.status_code == 200 and b"Say why" in response.content
    with run_jobs():
        response = client.post(url, {"format": "csv", "pii": "on", "reason": "Court order 12"})
    assert response.status_code == 302
    assert EvidenceExport.objects.get().reason == "Court order 12"


def test_support_has_no_evidence_tab(evidence, support_sam, login):
    client = login(support_sam)
    assert client.get(reverse("incidents:evidence", args=[evidence.reference])).status_code == 403
    assert b"/evidence/" not in client.get(evidence.get_absolute_url()).content


# --- The command line ---------------------------------------------------------------------


def test_the_command_writes_a_verifiable_audited_pack(evidence, tmp_path):
    out = io.StringIO()
    call_command(
        "export_incident", evidence.reference, "--format", "jsonl", "--out", str(tmp_path / "p"),
        stdout=out,
    )  # fmt: skip
    assert "manifest SHA-256" in out.getvalue()
    assert verify_pack(tmp_path / "p").ok
    entry = AuditEntry.objects.get(action="evidence.exported")
    assert entry.actor_label == "system:export_incident" and entry.after["pii"] is False


def test_the_command_needs_a_reason_for_addresses(evidence, tmp_path):
    with pytest.raises(CommandError, match="--reason"):
        call_command("export_incident", evidence.reference, "--pii", "--out", str(tmp_path / "p"))
    assert not (tmp_path / "p").exists() and _actions(evidence) == []
    call_command(
        "export_incident", evidence.reference, "--pii", "--reason", "DPA request 4",
        "--out", str(tmp_path / "p"), stdout=io.StringIO(),
    )  # fmt: skip
    assert "anna@example.com" in (tmp_path / "p" / "ledger.csv").read_text()


def test_the_command_refuses_a_directory_that_is_not_empty(evidence, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "other.txt").write_text("x")
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_incident", evidence.reference, "--out", str(tmp_path / "p"))
