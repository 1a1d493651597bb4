"""Benchmark: audience preview and freeze on a large send log, against bare PostgreSQL.

    python bench/bench_audience.py [--rows 10000000]

Loads bench/data/sendlog-ROWS.csv (made by bench/generate_sendlog.py) into its
own database with import_sendlog (once; later runs reuse it), then times, in
the same run and on the same data:

- preview: Amends' audience_preview (messages, people, people per locale,
  sample) against (a) a hand-written query giving the same numbers and
  (b) the bare minimum, SELECT count(*), count(DISTINCT address);
- freeze: Amends' audience_freeze (people, every message id, segments, list
  hash, audit) against a hand-written INSERT … SELECT DISTINCT ON into the
  same table with the same indexes.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, ROOT, django_env, ensure_database, machine, migrate, psql  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_audience"
TEMPLATE = "registry-gift-purchased"


def load(url: str, rows: int) -> None:
    """Fill the send log once, through import_sendlog itself; later runs reuse it."""
    path = DATA / f"sendlog-{rows}.csv"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run python bench/generate_sendlog.py --rows {rows}")
    have = int(psql(url, "-tAc", "SELECT count(*) FROM incidents_sendlogentry", capture=True))
    if have == rows:
        print(f"send log already holds {rows:,} rows")
        return
    print(f"loading {rows:,} rows with import_sendlog …", flush=True)
    psql(url, "-c", "TRUNCATE incidents_sendlogentry")
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "manage.py", "import_sendlog", str(path)],
        cwd=ROOT,
        env=django_env(url),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    psql(url, "-c", "VACUUM ANALYZE incidents_sendlogentry")
    print(f"loaded in {time.monotonic() - started:.1f} s")


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args(argv)

    ensure_database(args.url)
    migrate(args.url)
    load(args.url, args.rows)

    os.environ["DATABASE_URL"] = args.url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from incidents import selectors, services
    from incidents.actors import Actor
    from incidents.filters import AudienceFilter
    from incidents.models import AffectedPerson
    from incidents.roles import SUPPORT
    from incidents.services.audience import default_segment

    window = connection.cursor()
    window.execute(
        "SELECT min(sent_at), max(sent_at) FROM incidents_sendlogentry WHERE template = %s",
        [TEMPLATE],
    )
    start, end = window.fetchone()
    filters = AudienceFilter.from_dict(
        {"template": TEMPLATE, "sent_from": start, "sent_until": end.replace(microsecond=999999)}
    )
    where = "template = %s AND sent_at >= %s AND sent_at < %s"
    params = [TEMPLATE, filters.sent_from, filters.sent_until]

    from django.conf import settings
    from django.db import transaction

    def bare(sql: str, work_mem: str = ""):
        def run():
            with transaction.atomic(), connection.cursor() as cursor:
                if work_mem:
                    cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])
                cursor.execute(sql, params)
                return cursor.fetchall()

        return run

    print(f"\nmachine: {machine()}")
    print(f"send log: {args.rows:,} rows; filter: {filters.as_json()}")

    # --- Preview -------------------------------------------------------------
    bare_same = bare(
        f"""SELECT locale, count(*), sum(n) FROM (
              SELECT DISTINCT ON (address) address, locale, count(*) OVER (PARTITION BY address) n
              FROM incidents_sendlogentry WHERE {where} ORDER BY address, sent_at DESC) t
            GROUP BY locale"""
    )
    counts_sql = (
        f"SELECT count(*), count(DISTINCT address) FROM incidents_sendlogentry WHERE {where}"
    )
    bare_counts = bare(counts_sql)
    bare_counts_tuned = bare(counts_sql, settings.BULK_WORK_MEM)
    ours = lambda: selectors.audience_preview(filters=filters)  # noqa: E731
    ours()  # warm the cache for everyone
    t_ours, preview = timed(ours)
    t_same, _ = timed(bare_same)
    t_counts, counts = timed(bare_counts)
    t_tuned, _ = timed(bare_counts_tuned)
    print("\npreview")
    print(
        f"  amends audience_preview      {t_ours:7.2f} s   ({preview['messages']:,} messages, "
        f"{preview['people']:,} people, {len(preview['by_locale'])} locales)"
    )
    print(f"  bare, same numbers           {t_same:7.2f} s   ratio {t_ours / t_same:.2f}×")
    print(
        f"  bare, two counts only        {t_counts:7.2f} s   ratio {t_ours / t_counts:.2f}×"
        f"   ({counts[0][0]:,} messages, {counts[0][1]:,} people)"
    )
    print(
        f"  bare, two counts, work_mem {settings.BULK_WORK_MEM} {t_tuned:5.2f} s   "
        f"ratio {t_ours / t_tuned:.2f}×"
    )

    # --- Freeze --------------------------------------------------------------
    User = django.contrib.auth.get_user_model()
    user = User.objects.filter(username="bench").first() or services.user_create_with_role(
        username="bench",
        email="bench@amends.example",
        password=None,
        role=SUPPORT,
        by=Actor.system("bench"),
    )
    by = Actor.for_user(user)

    def new_incident(title):
        return services.incident_open(by=by, title=title, summary="bench")

    def bare_freeze(work_mem: str = ""):
        incident = new_incident("bare freeze")
        segment = default_segment(incident)
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            if work_mem:
                cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])
            cursor.execute(
                f"""INSERT INTO incidents_affectedperson (incident_id, address, original_address,
                      customer_id, locale, metadata, latest_status, message_ids, message_count,
                      first_sent_at, segment_id, source, added_at, removed_reason)
                    SELECT DISTINCT ON (address) %s, address, recipient, customer_id, locale,
                      metadata, status, '[]'::jsonb, 1, sent_at, %s, 'query', now(), ''
                    FROM incidents_sendlogentry WHERE {where}
                    ORDER BY address, sent_at DESC""",
                [incident.pk, segment.pk, *params],
            )
        return time.perf_counter() - started

    def our_freeze():
        incident = new_incident("amends freeze")
        started = time.perf_counter()
        query = services.audience_freeze(incident=incident, filters=filters, by=by)
        return time.perf_counter() - started, query

    rounds = []
    for _ in range(2):
        t_bare = bare_freeze()
        t_freeze, query = our_freeze()
        t_bare_tuned = bare_freeze(settings.BULK_WORK_MEM)
        rounds.append((t_freeze, t_bare, t_bare_tuned))
    t_freeze = statistics.median(r[0] for r in rounds)
    t_bare = statistics.median(r[1] for r in rounds)
    t_bare_tuned = statistics.median(r[2] for r in rounds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nfreeze")
    print(
        f"  amends audience_freeze       {t_freeze:7.2f} s   ({query.people_count:,} people, "
        f"{query.message_count:,} messages, list hash {query.list_hash[:12]}…)"
    )
    print(f"  bare INSERT … DISTINCT ON    {t_bare:7.2f} s   ratio {t_freeze / t_bare:.2f}×")
    print(
        f"  bare, work_mem {settings.BULK_WORK_MEM}          {t_bare_tuned:7.2f} s   "
        f"ratio {t_freeze / t_bare_tuned:.2f}×"
    )
    print(f"  rounds (ours, bare, bare tuned): {[tuple(round(x, 2) for x in r) for r in rounds]}")
    print(f"  peak RSS of this process: {rss:.0f} MB")
    people = AffectedPerson.objects.filter(incident__title="amends freeze").count()
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; affected rows written by amends: {people:,}")


if __name__ == "__main__":
    main()
