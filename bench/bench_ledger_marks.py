"""Benchmark: what the kept ledger's mark triggers cost the statements that change people.

    python bench/bench_ledger_marks.py [--rows 200000] [--batch 1000]

On the incident of bench_export.py (built there first: a million people), runs
the writes that sending, tracking and contact work make, in statements of
BATCH rows as the workers make them, three ways in the same run:

- no triggers: the mark triggers disabled (what the code did before them);
- triggers, no kept ledger: the incident has no LedgerCache (the usual case:
  nothing is marked, each statement's trigger joins its rows to no cache);
- triggers, kept ledger: the incident's ledger is kept in one format, so every
  changed person is marked.

The writes: `UPDATE campaigns_delivery SET attempts = attempts` (as the send
recorder and tracking update deliveries), `INSERT` of delivery events (as
webhooks apply them) and `UPDATE incidents_affectedperson SET contact_note`
(as contact work does). Each statement commits. Marks and events made here are
deleted afterwards.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_export import DEFAULT_URL, TITLE, _setup_django  # noqa: E402
from bench.common import machine  # noqa: E402

TRIGGERED = ("campaigns_delivery", "campaigns_deliveryevent", "incidents_affectedperson")


def _switch(cursor, incident_id: int, variant: str, cache: dict | None) -> None:
    on = "DISABLE" if variant == "no triggers" else "ENABLE"
    for table in TRIGGERED:
        cursor.execute(f"ALTER TABLE {table} {on} TRIGGER USER")
    cursor.execute("DELETE FROM incidents_ledgercache WHERE incident_id = %s", [incident_id])
    if variant == "triggers, kept ledger":
        cursor.execute(
            "INSERT INTO incidents_ledgercache (incident_id, fmt, fingerprint, built_at)"
            " VALUES (%s, 'csv', %s, now())",
            [incident_id, cache["fingerprint"] if cache else "bench"],
        )


def _writes(ids: list[int], delivery_ids: list[int], tag: str):
    """(name, statement, params) for one batch of people."""
    return [
        (
            "UPDATE deliveries",
            "UPDATE campaigns_delivery SET attempts = attempts WHERE id = ANY(%s)",
            [delivery_ids],
        ),
        (
            "INSERT events",
            "INSERT INTO campaigns_deliveryevent (esp, event_key, event_type, message_id,"
            " recipient, occurred_at, received_at, delivery_id, incident_id, outcome,"
            " bounce_kind, description, raw, mta_response, metadata, tags)"
            " SELECT 'bench', %s || d.id, 'opened', d.esp_message_id, '', now(), now(), d.id,"
            " d.incident_id, 'applied', '', '', '{}', '', '{}', '{}' FROM campaigns_delivery d"
            " WHERE d.id = ANY(%s)",
            [f"marks-{tag}", delivery_ids],
        ),
        (
            "UPDATE people",
            "UPDATE incidents_affectedperson SET contact_note = contact_note WHERE id = ANY(%s)",
            [ids],
        ),
    ]


def run(args) -> None:
    _setup_django(args.url)
    from django.db import connection

    from incidents.models import AffectedPerson, Incident, LedgerCache

    incident = Incident.objects.filter(title=TITLE).first()
    if incident is None:
        raise SystemExit("Run bench/bench_export.py first: it builds the incident.")
    people = list(
        AffectedPerson.objects.filter(incident=incident).order_by("?").values_list("id", flat=True)
    )[: args.rows]
    people.sort()
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = True
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT person_id, id FROM campaigns_delivery WHERE incident_id = %s", [incident.pk]
        )
        delivery_of = dict(cursor.fetchall())
    cache = LedgerCache.objects.filter(incident=incident).values().first()
    print(f"machine: {machine()}")
    print(f"{len(people):,} people of {incident.reference}, {args.batch:,} a statement\n")

    variants = ("no triggers", "triggers, no kept ledger", "triggers, kept ledger")
    seconds = {v: {} for v in variants}
    rows = dict.fromkeys(variants, 0)
    marks = dict.fromkeys(variants, 0)
    # The variants take turns batch by batch, so they meet the same caches (a first
    # pass over cold pages took twice as long as the same writes later).
    with raw.cursor() as cursor:
        for n, start in enumerate(range(0, len(people), args.batch)):
            variant = variants[n % len(variants)]
            _switch(cursor, incident.pk, variant, cache)
            ids = people[start : start + args.batch]
            deliveries = [delivery_of[p] for p in ids if p in delivery_of]
            for name, sql, params in _writes(ids, deliveries, f"{n}-"):
                started = time.perf_counter()
                cursor.execute(sql, params)
                spent = (time.perf_counter() - started) / len(ids)
                seconds[variant].setdefault(name, []).append(spent)
            rows[variant] += len(ids)
            cursor.execute("DELETE FROM incidents_ledgermark WHERE incident_id = %s", [incident.pk])
            marks[variant] += cursor.rowcount
        _switch(cursor, incident.pk, "triggers, no kept ledger", cache)
        if cache:
            cursor.execute(
                "INSERT INTO incidents_ledgercache (incident_id, fmt, fingerprint, built_at)"
                " VALUES (%s, %s, %s, %s)",
                [incident.pk, cache["fmt"], cache["fingerprint"], cache["built_at"]],
            )
        cursor.execute("DELETE FROM campaigns_deliveryevent WHERE esp = 'bench'")
        # Leave bench_export a database as it found it, not 300,000 dead rows heavier.
        for table in (*TRIGGERED, "incidents_ledgermark"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    results = {}
    for variant in variants:
        # The median statement: a checkpoint or autovacuum now and then stalls a few.
        results[variant] = {
            name: statistics.median(per_row) * 1e6 for name, per_row in seconds[variant].items()
        }
        line = ", ".join(f"{name} {us:.1f} µs" for name, us in results[variant].items())
        print(
            f"{variant:26} per row (median statement): {line}; "
            f"{marks[variant]:,} marks for {rows[variant]:,} people"
        )
    base = results["no triggers"]
    print("\ncost against no triggers (median time per row, ratio)")
    for variant in ("triggers, no kept ledger", "triggers, kept ledger"):
        ratios = [results[variant][name] / base[name] for name in base]
        print(
            f"  {variant:26} "
            + ", ".join(f"{name} {r:.2f}×" for name, r in zip(base, ratios, strict=True))
            + f" (median {statistics.median(ratios):.2f}×)"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
