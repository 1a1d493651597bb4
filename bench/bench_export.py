"""Benchmark: the evidence pack's contact ledger for a 1M-person incident, against bare COPY.

    python bench/bench_export.py [--people 1000000] [--rounds 3] [--touch 10000]

Builds its own incident in its own database (once; later runs reuse it) with
SQL: PEOPLE affected people in two segments, an approved version, a campaign
with one delivery per person (90% delivered, 5% bounced, 5% still sent), ESP
events (delivered or bounced for each, opened for a third, a deferral before
some), and a contact record for every delivered or bounced person. Then, in the
same run and on the same data:

- (a) ours, ledger: a child process that only writes ledger.csv (and hashes
  it) with incidents.export.ledger, as the export job does: wall time, rows/s,
  peak RSS of that process. Round 1 is cold: the kept ledger
  (incidents/export/ledger_kept.py) is forgotten first, so that export is
  written live (COPY) and the job it queues then keeps every line (timed
  apart, as `ledger_kept.keep`). Before each later round, TOUCH random people
  are changed (their contact note), as webhooks and staff change people
  between two exports: those rounds compute them while reading the rest, and
  the job folds them into the kept lines afterwards (timed apart too);
- (a') ours, whole pack: `manage.py export_incident REF --format csv` as a
  subprocess (Django start-up, timeline, sections, report, manifest, audit);
- (b) bare: `psql -c "\\copy (the ledger's own SELECT, whole incident) TO file CSV"`:
  the same join, built and shipped by PostgreSQL, written to a file by psql.

Targets (issue 7): (a) ≥ 200,000 rows/s and ≥ 0.25× (b); peak RSS < 200 MB.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    DATA,
    PYTHON,
    ROOT,
    BackendCPU,
    django_env,
    ensure_database,
    machine,
    migrate,
    psql,
    run_measured,
)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_export"
TITLE = "bench: evidence export"


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("AMENDS_VAR_DIR", str(DATA / "var"))
    import django

    django.setup()


def build(url: str, people: int) -> str:
    """The incident, created once; returns its reference."""
    _setup_django(url)
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from campaigns.models import Approval, Campaign, Message, MessageVersion
    from incidents import services
    from incidents.actors import Actor
    from incidents.models import AffectedPerson, AudienceQuery, Incident, Segment
    from incidents.roles import ADMIN, COMMS

    found = Incident.objects.filter(title=TITLE).first()
    if found and AffectedPerson.objects.filter(incident=found).count() == people:
        print(f"incident {found.reference} already holds {people:,} people")
        return found.reference
    print(f"building an incident of {people:,} people …", flush=True)
    started = time.monotonic()
    User = get_user_model()

    def user(name, role):
        return User.objects.filter(username=name).first() or services.user_create_with_role(
            username=name, email=f"{name}@amends.example", password=None, role=role,
            by=Actor.system("bench"),
        )  # fmt: skip

    admin, comms = user("bench_admin", ADMIN), user("bench_comms", COMMS)
    by = Actor.for_user(admin)
    incident = services.incident_open(by=by, title=TITLE, summary="bench", severity="SEV2")
    with transaction.atomic():
        segments = [
            Segment.objects.create(incident=incident, name="Has a registry", position=0),
            Segment.objects.create(incident=incident, name="Everyone else", is_default=True),
        ]
        query = AudienceQuery.objects.create(
            incident=incident, filters={"template": "bench"}, people_count=people,
            message_count=people, people_added=people, list_hash="0" * 64, created_by=admin,
        )  # fmt: skip
        version = None
        for segment in segments:
            message = Message.objects.create(
                incident=incident, segment=segment, sender_address="care@retailer.example"
            )
            v = MessageVersion(
                message=message, number=1, author=admin, sender_address="care@retailer.example",
                fallback_locale="en",
                content={"en": {"subject": "Sorry", "text": "We are sorry.", "html": ""},
                         "de": {"subject": "Entschuldigung", "text": "Es tut uns leid.", "html": ""}},
            )  # fmt: skip
            v.content_hash = v.compute_hash()
            v.save()
            Approval.objects.create(
                version=v, approver=comms, decision="approved", content_hash=v.content_hash
            )
            version = version or v
        campaigns = [
            Campaign.objects.create(
                incident=incident,
                segment=s,
                version=version,
                content_hash=version.content_hash,
                status="completed",
                launched_by=admin,
            )  # fmt: skip
            for s in segments
        ]
    t = {
        "person": AffectedPerson._meta.db_table,
        "delivery": "campaigns_delivery",
        "event": "campaigns_deliveryevent",
        "record": "incidents_contactrecord",
    }
    with connection.cursor() as c:
        c.execute("SET synchronous_commit = off")
        c.execute(
            f"""INSERT INTO {t["person"]} (incident_id, address, original_address, customer_id,
                  locale, metadata, latest_status, message_ids, message_count, first_sent_at,
                  segment_id, source, added_by_query_id, added_at, removed_reason,
                  contact_status, contact_method, contact_note)
                SELECT %s, 'person' || i || '@example.com', 'Person' || i || '@Example.com',
                  'C' || i, CASE WHEN i %% 3 = 0 THEN 'de' ELSE 'en' END,
                  jsonb_build_object('first_name', 'Name' || i),
                  'delivered', jsonb_build_array('<m' || i || '@esp>'), 1,
                  now() - interval '2 days', CASE WHEN i %% 7 = 3 THEN %s ELSE %s END,
                  'query', %s, now() - interval '1 day', '',
                  'pending', '', ''
                FROM generate_series(1, %s) i""",
            [incident.pk, segments[0].pk, segments[1].pk, query.pk, people],
        )
        # One delivery each: 90% delivered, 5% bounced, 5% still sent.
        c.execute(
            f"""INSERT INTO {t["delivery"]} (campaign_id, incident_id, person_id, address, locale,
                  status, attempts, esp_message_id, error, sent_at, created_at, updated_at,
                  verification_code, resend, delivered_at, bounce_kind, opened, clicked)
                SELECT CASE WHEN p.segment_id = %s THEN %s ELSE %s END, p.incident_id, p.id,
                  p.address, p.locale,
                  CASE WHEN p.id %% 20 = 0 THEN 'bounced' WHEN p.id %% 20 = 1 THEN 'sent'
                       ELSE 'delivered' END,
                  1, '<apology-' || p.id || '@esp>',
                  CASE WHEN p.id %% 20 = 0 THEN '550 ' || p.address || ' unknown' ELSE '' END,
                  now() - interval '20 hours', now() - interval '21 hours',
                  now() - interval '19 hours', 'B' || lpad(p.id::text, 12, '0'), false,
                  CASE WHEN p.id %% 20 > 1 THEN now() - interval '19 hours' END,
                  CASE WHEN p.id %% 20 = 0 THEN 'hard' ELSE '' END, p.id %% 3 = 0, false
                FROM {t["person"]} p WHERE p.incident_id = %s""",
            [segments[0].pk, campaigns[0].pk, campaigns[1].pk, incident.pk],
        )
        for kind, where, minutes in (
            ("deferred", "d.person_id %% 10 = 5", 5),
            ("delivered", "d.status = 'delivered'", 10),
            ("bounced", "d.status = 'bounced'", 10),
            ("opened", "d.status = 'delivered' AND d.person_id %% 3 = 0", 60),
        ):
            c.execute(
                f"""INSERT INTO {t["event"]} (esp, event_key, event_type, message_id, recipient,
                      occurred_at, received_at, applied_at, outcome, delivery_id, incident_id,
                      bounce_kind, description, mta_response, metadata, tags, raw)
                    SELECT 'postmark', %s || d.id, %s, d.esp_message_id, d.address,
                      d.sent_at + make_interval(mins => %s), d.sent_at + make_interval(mins => %s),
                      now(), 'applied', d.id, d.incident_id,
                      CASE WHEN %s = 'bounced' THEN 'hard' ELSE '' END, '', '', '{{}}', '[]',
                      jsonb_build_object('Recipient', d.address)
                    FROM {t["delivery"]} d WHERE d.incident_id = %s AND {where}""",
                [kind + "-", kind, minutes, minutes, kind, incident.pk],
            )
        c.execute(
            f"""INSERT INTO {t["record"]} (incident_id, person_id, status, previous_status,
                  method, note, contacted_at, delivery_id, recorded_by_label, recorded_at)
                SELECT d.incident_id, d.person_id,
                  CASE WHEN d.status = 'delivered' THEN 'contacted' ELSE 'unreachable' END,
                  'pending', CASE WHEN d.status = 'delivered' THEN 'email' ELSE '' END,
                  CASE WHEN d.status = 'bounced' THEN 'hard bounce' ELSE '' END,
                  d.delivered_at, d.id, 'system:tracking', d.sent_at + interval '10 minutes'
                FROM {t["delivery"]} d WHERE d.incident_id = %s AND d.status <> 'sent'""",
            [incident.pk],
        )
        c.execute(
            f"""UPDATE {t["person"]} p SET contact_status = r.status, contact_method = r.method,
                  contacted_at = r.contacted_at, contact_updated_at = r.recorded_at
                FROM {t["record"]} r WHERE r.person_id = p.id AND r.incident_id = %s""",
            [incident.pk],
        )
    for table in t.values():
        psql(url, "-c", f"VACUUM ANALYZE {table}")
    print(f"built in {time.monotonic() - started:.1f} s")
    return incident.reference


def ledger_child(url: str, reference: str, out: str) -> None:
    """Child mode: write ledger.csv only, print rows and seconds."""
    _setup_django(url)
    from django.db import connection

    from incidents.export import ledger_kept
    from incidents.export.files import HashedFile
    from incidents.export.ledger import write_ledger
    from incidents.models import Incident

    incident = Incident.objects.get(reference=reference)
    # Every backend of the bench database: the ledger's COPY streams have connections of
    # their own, sampled every 50 ms until the last one is gone.
    backends = BackendCPU(connection.settings_dict["NAME"])
    sampler = connection.get_new_connection(connection.get_connection_params())
    sampler.autocommit = True
    with sampler.cursor() as cursor:
        backends.poll(cursor)
    server_before, client_before = backends.seconds, _own_cpu_seconds()
    done = threading.Event()

    def sample() -> None:
        with sampler.cursor() as cursor:
            while not done.wait(0.05):
                backends.poll(cursor)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    target = HashedFile(Path(out))
    rows = write_ledger(incident, target, fmt="csv", pii=False)
    target.close(rows=rows)
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    sampler.close()
    server = backends.seconds - server_before
    client = _own_cpu_seconds() - client_before
    # What the export queues next, on the exports queue (not part of the file's time):
    # after the first export the lines are built, after later ones the people it
    # computed while reading are folded into them.
    started = time.perf_counter()
    kept = ledger_kept.keep(incident, fmt="csv")
    keep_seconds = time.perf_counter() - started
    print(f"{rows} {seconds:.3f} {server:.2f} {client:.2f} {kept} {keep_seconds:.3f}")


def _own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_sql(url: str, reference: str) -> str:
    """The ledger's own SELECT over the whole incident, parameters inlined, for psql."""
    _setup_django(url)
    from incidents.export import ledger
    from incidents.models import AffectedPerson, Incident

    incident = Incident.objects.get(reference=reference)
    ids = AffectedPerson.objects.filter(incident=incident).order_by("id")
    params = ledger.params(incident, ids.first().pk, ids.last().pk + 1)
    sql = ledger.select_sql(pii=False, fmt="csv")
    for name, value in params.items():
        literal = f"'\\x{value.hex()}'" if isinstance(value, bytes) else str(int(value))
        sql = sql.replace(f"%({name})s", literal)
    return " ".join(sql.split())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--touch", type=int, default=10_000, help="People changed before each warm round."
    )
    parser.add_argument("--no-pack", action="store_true", help="Skip the whole-pack command.")
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument(
        "--ledger-child", nargs=2, metavar=("REFERENCE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.ledger_child:
        ledger_child(args.url, *args.ledger_child)
        return

    DATA.mkdir(parents=True, exist_ok=True)
    ensure_database(args.url)
    migrate(args.url)
    reference = build_in_child(args)
    sql = bare_sql(args.url, reference)
    env = django_env(args.url)
    out_dir = DATA / "export"
    out_dir.mkdir(exist_ok=True)
    print(f"\nmachine: {machine()}")
    print(f"incident {reference}: {args.people:,} people\n")

    ours, bare, packs, keeps = [], [], [], []
    print(f"load before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for n in range(args.rounds):
        if n == 0:
            forget_kept(args.url, reference)
        elif args.touch:
            touch(args.url, reference, args.touch, n)
        target = out_dir / "ledger.csv"
        m = run_measured(
            [PYTHON, __file__, "--url", args.url, "--ledger-child", reference, str(target)],
            env=env,
        )
        rows, seconds, server_cpu, client_cpu, kept, keep_seconds = m.stdout.split()
        ours.append(
            (int(rows), float(seconds), m.seconds - float(keep_seconds), m.peak_rss_mb,
             target.stat().st_size, float(server_cpu), float(client_cpu))
        )  # fmt: skip
        keeps.append(float(keep_seconds))
        bare_file = out_dir / "bare.csv"
        started = time.monotonic()
        psql(args.url, "-c", f"\\copy ({sql}) TO '{bare_file}' WITH (FORMAT csv)")
        bare.append(time.monotonic() - started)
        pack_dir = out_dir / f"pack-{n}"
        subprocess.run(["rm", "-rf", str(pack_dir)], check=True)
        if args.no_pack:
            packs.append((0.0, 0.0))
        else:
            p = run_measured(
                [PYTHON, "manage.py", "export_incident", reference, "--format", "csv",
                 "--out", str(pack_dir)],
                env=env,
            )  # fmt: skip
            packs.append((p.seconds, p.peak_rss_mb))
            subprocess.run(["rm", "-rf", str(pack_dir)], check=True)
        print(
            f"round {n + 1}: ledger {float(seconds):.2f} s in-process ({ours[-1][2]:.2f} s with "
            f"start-up, {m.peak_rss_mb:.0f} MB); bare \\copy {bare[-1]:.2f} s; "
            f"export_incident {packs[-1][0]:.2f} s ({packs[-1][1]:.0f} MB); then the queued "
            f"keep job built or folded {int(kept):,} people in {float(keep_seconds):.2f} s",
            flush=True,
        )
    rows = ours[0][0]
    cold, warm = ours[0], ours[1:] or ours
    keep_first = keeps[0]
    t_ours = statistics.median(o[1] for o in warm)
    t_ours_wall = statistics.median(o[2] for o in warm)
    t_bare = statistics.median(bare)
    t_pack = statistics.median(p[0] for p in packs)
    rss = max(o[3] for o in ours)
    rss_pack = max(p[1] for p in packs)
    size = ours[0][4]
    server_cpu = statistics.median(o[5] for o in warm)
    client_cpu = statistics.median(o[6] for o in warm)
    print("\ncontact ledger (CSV, pseudonymised)")
    print(f"  rows                          {rows:,} ({size / 1024**2:.0f} MB)")
    print(
        f"  ours, first export (live)     {cold[1]:7.2f} s   {rows / cold[1]:10,.0f} rows/s"
        f"   (peak RSS {cold[3]:.0f} MB); then the lines were kept in {keep_first:.2f} s"
    )
    print(
        f"  ours, ledger (warm, median)   {t_ours:7.2f} s   {rows / t_ours:10,.0f} rows/s"
        f"   ({args.touch:,} people changed before each)"
    )
    print(
        f"  ours, ledger incl. start-up   {t_ours_wall:7.2f} s   {rows / t_ours_wall:10,.0f} rows/s"
    )
    print(f"  bare psql \\copy, same join    {t_bare:7.2f} s   {rows / t_bare:10,.0f} rows/s")
    print(f"  ours / bare (rows/s)          {t_bare / t_ours:7.2f}×")
    print(
        f"  CPU: PostgreSQL backends      {server_cpu:7.2f} s   {rows / server_cpu:10,.0f} rows per "
        f"CPU-second; this process {client_cpu:.2f} s (they overlap on two cores)"
    )
    print(f"  peak RSS, ledger process      {rss:7.0f} MB (all rounds)")
    print(f"  export_incident, whole pack   {t_pack:7.2f} s   peak RSS {rss_pack:.0f} MB")
    print(f"load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


def _incident_sql(reference: str) -> str:
    return f"(SELECT id FROM incidents_incident WHERE reference = '{reference}')"


def forget_kept(url: str, reference: str) -> None:
    """Drop the incident's kept ledger, so the next export is the first (cold) one."""
    incident = _incident_sql(reference)
    for table in ("incidents_ledgercache", "incidents_ledgermark", "incidents_ledgerline"):
        psql(url, "-c", f"DELETE FROM {table} WHERE incident_id = {incident}")  # noqa: S608
    psql(url, "-c", "VACUUM incidents_ledgerline")


def touch(url: str, reference: str, people: int, round_: int) -> None:
    """Change `people` random people of the incident, as happens between two exports."""
    psql(
        url,
        "-c",
        f"UPDATE incidents_affectedperson SET contact_note = 'bench round {round_}'"  # noqa: S608
        f" WHERE id IN (SELECT id FROM incidents_affectedperson"
        f" WHERE incident_id = {_incident_sql(reference)} ORDER BY random() LIMIT {people})",
    )


def build_in_child(args) -> str:
    """Build (or find) the incident in a child process, so this one holds no Django state."""
    result = subprocess.run(
        [PYTHON, "-c",
         "import sys; sys.path.insert(0, '.'); from bench.bench_export import build; "
         f"print(build({args.url!r}, {args.people}))"],
        cwd=ROOT, env=django_env(args.url), check=True, capture_output=True, text=True,
    )  # fmt: skip
    sys.stdout.write("\n".join(result.stdout.splitlines()[:-1]) + "\n")
    return result.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
