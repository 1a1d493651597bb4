"""The send log ingest: files (command and upload), API batches, ESP events, retention."""

import csv
import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from incidents import services
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.models import AuditEntry, SendLogEntry, SendLogImport
from incidents.sendlog_files import normalise_address

HEADER = "message_id,recipient,customer_id,template,tags,sent_at,locale,metadata"
GOOD = [
    'm1,Cust1@Example.com,C1,registry-gift-purchased,Registry;Gift,2026-11-28T09:00:00Z,EN,"{""has_registry"": false}"',
    "m2,anna@bücher.de,C2,registry-gift-purchased,,2026-11-28T09:05:00+01:00,de,",
    "m3, bob@example.org ,,weekly-newsletter,newsletter,2026-11-28T09:10:00Z,,{}",
]
API = Actor.system("tests-api")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def write(tmp_path, lines, name="send-log.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def run(path, *args):
    out = StringIO()
    call_command("import_sendlog", str(path), *args, stdout=out)
    return out.getvalue()


def report_rows(media, imp):
    with open(media / imp.error_report, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_file_is_imported_with_normalised_addresses_tags_and_times(db, tmp_path):
    run(write(tmp_path, [HEADER, *GOOD]))
    m1, m2, m3 = SendLogEntry.objects.order_by("message_id")
    assert (m1.recipient, m1.address) == ("Cust1@Example.com", "cust1@example.com")
    assert m1.tags == ";registry;gift;" and m1.locale == "en"
    assert m1.metadata == {"has_registry": False} and m1.source == "import"
    assert m2.address == "anna@xn--bcher-kva.de"
    assert m2.sent_at == datetime(2026, 11, 28, 8, 5, tzinfo=UTC)
    assert (m2.tags, m2.metadata) == ("", {})
    assert (m3.recipient, m3.address) == (" bob@example.org ", "bob@example.org")


def test_importing_the_same_file_twice_changes_nothing(db, tmp_path):
    path = write(tmp_path, [HEADER, *GOOD])
    run(path)
    before = list(SendLogEntry.objects.order_by("id").values())
    run(path)
    second = SendLogImport.objects.order_by("id").last()
    assert (second.rows_read, second.rows_inserted, second.rows_duplicate) == (3, 0, 3)
    assert list(SendLogEntry.objects.order_by("id").values()) == before


def test_a_message_id_repeated_in_one_file_goes_in_once(db, tmp_path):
    run(write(tmp_path, [HEADER, GOOD[0], GOOD[0].replace("Cust1", "other")]))
    imp = SendLogImport.objects.get()
    assert (imp.rows_inserted, imp.rows_duplicate) == (1, 1)
    assert SendLogEntry.objects.get().recipient == "Cust1@Example.com"


def test_bad_rows_are_reported_by_line_and_reason_and_good_rows_kept(db, tmp_path, media):
    lines = [
        HEADER,
        GOOD[0],
        "m10,not-an-address,,t,,2026-11-28T09:00:00Z,,",
        "m11,a@example.com,,t,,2026-11-28 09:00:00,,",
        "m12,a@example.com,,t",
        'm13,"a@exa\nmple.com",,t,,2026-11-28T09:00:00Z,,',
        'm14,a@example.com,,t,,2026-11-28T09:00:00Z,,"[1, 2]"',
        ",a@example.com,,t,,2026-11-28T09:00:00Z,,",
        f"m16,a@example.com,,{'t' * 201},,2026-11-28T09:00:00Z,,",
        'm17,a@example.com,,t,,2026-11-28T09:00:00Z,,"{""a"": 1"',
        "=HYPERLINK(1),a@example.com,,t,,tomorrow,,",
        GOOD[1],
    ]
    out = run(write(tmp_path, lines))
    imp = SendLogImport.objects.get()
    assert (imp.rows_read, imp.rows_inserted, imp.rows_rejected) == (11, 2, 9)
    assert set(SendLogEntry.objects.values_list("message_id", flat=True)) == {"m1", "m2"}
    report = report_rows(media, imp)
    reasons = {int(row["line"]): row["reason"] for row in report}
    assert reasons[3].startswith("recipient: the address has no local part")
    assert "has no time zone" in reasons[4]
    assert reasons[5] == "the row has 4 fields; the header has 8"
    assert "line break" in reasons[6]
    assert reasons[8] == "metadata is not a JSON object"  # line 7 is the quoted newline
    assert reasons[9] == "message_id is empty"
    assert reasons[10] == "template is longer than 200 characters"
    assert reasons[11].startswith("metadata is not valid JSON")
    assert "not an ISO 8601 date" in reasons[12]
    assert report[0]["excerpt"] == "m10,not-an-address,,t,,2026-11-28T09:00:00Z,,"
    assert report[-1]["excerpt"].startswith("'=HYPERLINK")  # no formulas in spreadsheets
    assert str(media / imp.error_report) in out


def test_the_map_option_reads_other_column_names(db, tmp_path):
    path = write(
        tmp_path,
        [
            "MessageID;Email;Timestamp;Campaign;Extra",
            "<a1@esp>;Ann@Example.com;2026-11-28T09:00:00Z;registry-gift-purchased;x",
            "<a2@esp>;bo@example.com;1795856400;registry-gift-purchased;y",
        ],
        name="export.txt",
    )
    run(path, "--map", "recipient=Email,message_id=MessageID", "--map", "sent_at=Timestamp")
    assert SendLogImport.objects.get().column_map == {
        "recipient": "Email",
        "message_id": "MessageID",
        "sent_at": "Timestamp",
    }
    rows = dict(SendLogEntry.objects.values_list("message_id", "address"))
    assert rows == {"<a1@esp>": "ann@example.com", "<a2@esp>": "bo@example.com"}
    assert SendLogEntry.objects.get(message_id="<a2@esp>").sent_at == datetime(
        2026, 11, 28, 9, 0, tzinfo=UTC
    )


def test_a_map_naming_a_missing_column_fails_and_imports_nothing(db, tmp_path):
    with pytest.raises(CommandError, match="no column “Email” \\(for recipient\\)"):
        run(write(tmp_path, [HEADER, *GOOD]), "--map", "recipient=Email")
    assert not SendLogEntry.objects.exists()


def test_json_lines_are_imported_with_nested_keys(db, tmp_path):
    lines = [
        json.dumps(
            {
                "event": {"id": "j1", "to": "Jo@Example.com"},
                "ts": "2026-11-28T09:00:00Z",
                "tags": ["Registry", "gift"],
                "metadata": {"has_registry": True, "first_name": "Jo"},
                "customer_id": 42,
            }
        ),
        "",
        json.dumps({"event": {"id": "j2", "to": "x@example.com"}, "ts": "2026-11-28T09:00:00"}),
        "[1, 2]",
        "{not json",
    ]
    run(
        write(tmp_path, lines, name="events.jsonl"),
        "--map",
        "message_id=event.id,recipient=event.to,sent_at=ts",
    )
    imp = SendLogImport.objects.get()
    assert (imp.rows_read, imp.rows_inserted, imp.rows_rejected) == (4, 1, 3)
    entry = SendLogEntry.objects.get()
    assert (entry.message_id, entry.address, entry.customer_id) == ("j1", "jo@example.com", "42")
    assert entry.tags == ";registry;gift;"
    assert entry.metadata == {"has_registry": True, "first_name": "Jo"}


def test_a_line_over_the_limit_is_reported_not_a_crash(db, tmp_path, settings, media):
    settings.SENDLOG_MAX_LINE_BYTES = 1024
    long_line = f'm9,a@example.com,,t,,2026-11-28T09:00:00Z,,"{{""x"": ""{"y" * 5000}""}}"'
    run(write(tmp_path, [HEADER, GOOD[0], long_line, GOOD[1]]))
    imp = SendLogImport.objects.get()
    assert (imp.rows_read, imp.rows_inserted, imp.rows_rejected) == (3, 2, 1)
    [problem] = report_rows(media, imp)
    assert problem["line"] == "3"
    assert problem["reason"] == "the line is longer than the limit of 1024 bytes"
    assert len(problem["excerpt"]) == 200


def test_an_unclosed_quote_costs_one_row_not_the_rest_of_the_file(db, tmp_path, settings, media):
    settings.SENDLOG_MAX_LINE_BYTES = 300
    filler = [f"m{i},a{i}@example.com,,t,,2026-11-28T09:00:00Z,," for i in range(20, 40)]
    run(write(tmp_path, [HEADER, 'm9,"a@example.com,,t,,2026-11-28T09:00:00Z,,', *filler]))
    imp = SendLogImport.objects.get()
    assert imp.rows_rejected == 1 and imp.rows_inserted > 10
    assert "unclosed quote" in report_rows(media, imp)[0]["reason"]


def test_a_file_that_is_not_utf8_fails_clearly_and_inserts_nothing(db, tmp_path):
    path = write(
        tmp_path,
        [HEADER, *GOOD, "m4,zoë@example.com,,t,,2026-11-28T09:00:00Z,,"],
        encoding="latin-1",
    )
    with pytest.raises(CommandError, match="not UTF-8 text \\(first bad byte on line 3\\)"):
        run(path)
    assert not SendLogEntry.objects.exists()
    imp = SendLogImport.objects.get()
    assert imp.status == "failed" and "UTF-8" in imp.failure
    assert AuditEntry.objects.filter(action="sendlog.import_failed").count() == 1


def test_a_binary_file_fails_clearly(db, tmp_path):
    path = tmp_path / "send-log.csv"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    with pytest.raises(CommandError, match="ZIP archive or an Excel workbook"):
        run(path)
    assert not SendLogEntry.objects.exists()


def test_a_file_without_a_header_fails_clearly_and_inserts_nothing(db, tmp_path):
    with pytest.raises(CommandError, match="first line holds an e-mail address") as exc:
        run(write(tmp_path, GOOD))
    assert "Cust1" not in str(exc.value)  # the failure is audited: no addresses in it
    assert not SendLogEntry.objects.exists()


def test_the_command_prints_the_summary(db, tmp_path, media):
    out = run(write(tmp_path, [HEADER, *GOOD, "bad,row"]))
    imp = SendLogImport.objects.get()
    assert f"as import {imp.pk}" in out and "rows/s" in out
    assert "rows read:                 4" in out
    assert "inserted:                  3" in out
    assert "duplicate:                 0" in out
    assert "rejected:                  1" in out
    assert f"Error report: {media / f'imports/sendlog-{imp.pk}-errors.csv'}" in out


def test_the_import_is_audited_with_counts_and_no_addresses(db, tmp_path):
    run(write(tmp_path, [HEADER, *GOOD]))
    entry = AuditEntry.objects.get(action="sendlog.imported")
    assert entry.actor_label == "system:import_sendlog"
    assert entry.after["rows_inserted"] == 3 and entry.after["file_name"] == "send-log.csv"
    assert entry.after["file_format"] == "csv"
    assert "example" not in json.dumps(entry.after).lower()


def test_progress_is_recorded_batch_by_batch(db, tmp_path, settings):
    settings.SENDLOG_BATCH_ROWS = 2
    seen = []
    lines = [f"m{i},a{i}@example.com,,t,,2026-11-28T09:00:00Z,," for i in range(7)]
    path = write(tmp_path, [HEADER, *lines])
    imp = services.sendlog_import_file(
        path=path,
        by=Actor.system("tests"),
        on_progress=lambda imp: seen.append((imp.rows_read, imp.progress)),
    )
    assert [read for read, _ in seen] == [2, 4, 6, 7]
    assert all(0 < progress <= 1 for _, progress in seen)
    assert (imp.status, imp.progress, imp.rows_inserted) == ("done", 1.0, 7)


def test_a_crash_keeps_the_committed_batches_and_running_again_is_safe(
    db, tmp_path, settings, monkeypatch
):
    from incidents.services import sendlog as sendlog_service

    settings.SENDLOG_BATCH_ROWS = 2
    calls = []
    for writer in (sendlog_service._PostgresWriter, sendlog_service._SqliteWriter):
        real_insert = writer.insert

        def flaky(self, prepared, source, real_insert=real_insert):
            calls.append(1)
            if len(calls) == 2:
                raise OSError("disk full")
            return real_insert(self, prepared, source)

        monkeypatch.setattr(writer, "insert", flaky)
    lines = [f"m{i},a{i}@example.com,,t,,2026-11-28T09:00:00Z,," for i in range(5)]
    path = write(tmp_path, [HEADER, *lines])
    with pytest.raises(CommandError, match="stopped: OSError: disk full.*again is safe"):
        run(path)
    failed = SendLogImport.objects.get()
    assert (failed.status, failed.rows_inserted) == ("failed", 2)
    assert "disk full" in failed.failure
    assert SendLogEntry.objects.count() == 2

    monkeypatch.undo()
    run(path)
    again = SendLogImport.objects.order_by("id").last()
    assert (again.status, again.rows_inserted, again.rows_duplicate) == ("done", 3, 2)


def upload(content: bytes, name="export.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_an_upload_is_imported_by_the_job(db, support_sam, media, run_jobs):
    content = "\n".join(["MessageID,Email,Timestamp", "u1,Ann@Example.com,2026-11-28T09:00:00Z"])
    with run_jobs():
        imp = services.sendlog_import_start(
            uploaded_file=upload(content.encode()),
            file_format="",
            column_map={"message_id": "MessageID", "recipient": "Email", "sent_at": "Timestamp"},
            by=Actor.for_user(support_sam),
        )
    assert (media / f"imports/sendlog-{imp.pk}.csv").exists()
    imp.refresh_from_db()
    assert (imp.status, imp.progress, imp.rows_inserted) == ("done", 1.0, 1)
    assert imp.bytes_read == imp.file_size == len(content)
    assert SendLogEntry.objects.get().address == "ann@example.com"
    actions = list(AuditEntry.objects.order_by("seq").values_list("action", "actor"))
    assert actions[-2:] == [
        ("sendlog.import_queued", support_sam.pk),
        ("sendlog.imported", support_sam.pk),
    ]


def test_running_the_job_again_does_nothing(db, support_sam, run_jobs):
    from incidents.jobs import run_sendlog_import

    content = f"{HEADER}\n{GOOD[0]}\n".encode()
    with run_jobs():
        imp = services.sendlog_import_start(
            uploaded_file=upload(content), file_format="csv", column_map={}, by=API
        )
    run_sendlog_import(imp.pk)
    assert AuditEntry.objects.filter(action="sendlog.imported").count() == 1


def test_an_upload_with_a_bad_header_is_refused_at_once(db, support_sam, media):
    with pytest.raises(ValidationError, match="no sent_at column"):
        services.sendlog_import_start(
            uploaded_file=upload(b"message_id,recipient\nm1,a@example.com\n"),
            file_format="csv",
            column_map={},
            by=Actor.for_user(support_sam),
        )
    assert not SendLogImport.objects.exists()
    assert not list((media / "imports").glob("*"))


def test_an_upload_over_the_size_limit_is_refused(db, settings, support_sam):
    settings.SENDLOG_MAX_UPLOAD_BYTES = 100
    with pytest.raises(ValidationError, match="larger than the limit"):
        services.sendlog_import_start(
            uploaded_file=upload(b"x" * 101), file_format="csv", column_map={}, by=API
        )
    assert not SendLogImport.objects.exists()


def test_a_file_refused_by_the_job_is_recorded_as_failed(db, run_jobs):
    # The first megabyte passes the quick check; the byte that is not UTF-8 comes later.
    good = "".join(f"m{i},a{i}@example.com,,t,,2026-11-28T09:00:00Z,,\n" for i in range(30_000))
    content = (
        f"{HEADER}\n{good}".encode()
        + "m,zoë@example.com,,t,,2026-11-28T09:00:00Z,,\n".encode("latin-1")
    )
    with run_jobs():
        imp = services.sendlog_import_start(
            uploaded_file=upload(content), file_format="csv", column_map={}, by=API
        )
    imp.refresh_from_db()
    assert imp.status == "failed" and "not UTF-8" in imp.failure
    assert not SendLogEntry.objects.exists()


def test_an_api_batch_reports_errors_by_index(db):
    result = services.sendlog_ingest_rows(
        rows=[
            {
                "message_id": "a1",
                "recipient": "A@Example.com",
                "sent_at": "2026-11-28T09:00:00Z",
                "tags": ["Registry"],
                "metadata": {"has_registry": False},
            },
            {"message_id": "a2", "recipient": "nobody", "sent_at": "2026-11-28T09:00:00Z"},
            {
                "message_id": "a3",
                "recipient": "c@example.com",
                "sent_at": "2026-11-28T09:00:00Z",
                "email": "typo",
            },
            "not an object",
            {"message_id": "a1", "recipient": "A@Example.com", "sent_at": "2026-11-28T09:00:00Z"},
        ],
        source="api",
        by=API,
    )
    assert (result.received, result.inserted, result.duplicate, result.rejected) == (5, 1, 1, 3)
    assert [(e.index, e.reason) for e in result.errors] == [
        (1, "recipient: the address has no local part, @ and domain"),
        (2, "unknown field(s): email"),
        (3, "the row is not an object"),
    ]
    entry = SendLogEntry.objects.get()
    assert (entry.source, entry.tags, entry.metadata) == (
        "api",
        ";registry;",
        {"has_registry": False},
    )
    audit = AuditEntry.objects.get(action="sendlog.ingested")
    assert audit.after == {
        "source": "api",
        "received": 5,
        "inserted": 1,
        "duplicate": 1,
        "rejected": 3,
    }


def test_an_api_batch_over_the_limit_is_refused(db, settings):
    settings.SENDLOG_API_MAX_ROWS = 2
    with pytest.raises(ValidationError, match="at most 2 rows; this one has 3"):
        services.sendlog_ingest_rows(rows=[{}] * 3, source="api", by=API)


def test_an_event_for_an_unknown_message_adds_it(db):
    at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    outcome = services.sendlog_record_event(
        message_id="w1",
        recipient="Web@Example.com",
        status="delivered",
        timestamp=at,
        template="registry-gift-purchased",
        tags=["Registry"],
        metadata={"x": 1},
        esp="postmark",
    )
    entry = SendLogEntry.objects.get()
    assert outcome == "added"
    assert (entry.address, entry.status, entry.source, entry.sent_at) == (
        "web@example.com",
        "delivered",
        "webhook",
        at,
    )
    assert (entry.tags, entry.metadata) == (";registry;", {"x": 1, "esp": "postmark"})


def test_an_event_for_a_known_message_sets_its_status(db, tmp_path):
    run(write(tmp_path, [HEADER, *GOOD]))
    at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    event = {"message_id": "m1", "recipient": "x@example.com", "timestamp": at}
    assert services.sendlog_record_event(status="opened", **event) == "updated"
    assert services.sendlog_record_event(status="opened", **event) == "unchanged"
    assert services.sendlog_record_event(status="queued", **event) == "unchanged"
    entry = SendLogEntry.objects.get(message_id="m1")
    assert (entry.status, entry.recipient, entry.source) == (
        "opened",
        "Cust1@Example.com",
        "import",
    )


def test_prune_deletes_only_old_rows(db, settings):
    settings.SENDLOG_RETENTION_DAYS = 30
    now = datetime.now(UTC)
    for i, age in enumerate([1, 29, 31, 400]):
        SendLogEntry.objects.create(
            message_id=f"p{i}",
            recipient="a@example.com",
            address="a@example.com",
            sent_at=now - timedelta(days=age),
        )
    out = StringIO()
    call_command("prune_sendlog", "--dry-run", stdout=out)
    assert "2 send log entries are older than 30 days" in out.getvalue()
    assert SendLogEntry.objects.count() == 4
    call_command("prune_sendlog", stdout=out)
    assert sorted(SendLogEntry.objects.values_list("message_id", flat=True)) == ["p0", "p1"]
    entry = AuditEntry.objects.get(action="sendlog.pruned")
    assert (entry.after["days"], entry.after["entries_deleted"]) == (30, 2)


_CHARS = st.sampled_from("aZ09.-_+ <>,\n\tüßÄ!#'\"\x7f")
_ADDRESSES = st.one_of(
    # Addresses the fast path takes, valid or not (lengths around the 64 and 63 limits)…
    st.from_regex(
        r"[A-Za-z0-9._+'-]{1,66}@([A-Za-z0-9-]{1,64}\.){1,3}[A-Za-z]{2,6}\.?", fullmatch=True
    ),
    st.from_regex(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{0,66}@[A-Za-z0-9.-]{0,70}", fullmatch=True),
    # …and anything else, which must go through normalise() and fail the same way.
    st.text(alphabet=st.sampled_from("aZ09.-_+@ <>,\n\tü!#"), max_size=30),
    st.builds(
        "{}@{}".format,
        st.text(alphabet=_CHARS, max_size=70),
        st.text(alphabet=st.sampled_from("aZ09.-_ü@ "), max_size=30),
    ),
)


@given(_ADDRESSES)
@hypothesis_settings(max_examples=1000)
def test_the_fast_address_path_agrees_with_normalise(raw):
    def outcome(fn):
        try:
            return fn(raw)
        except InvalidAddress as exc:
            return f"error: {exc}"

    assert outcome(normalise_address) == outcome(normalise)
