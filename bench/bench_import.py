"""Benchmark: import_sendlog against a bare psql \\copy of the same rows.

    .venv/bin/python bench/bench_import.py --rows 10000000

1. Generates bench/data/sendlog-N.csv if it is missing (bench/generate_sendlog.py).
2. Creates and migrates the bench database (BENCH_DATABASE_URL or DATABASE_URL,
   default postgres://postgres@127.0.0.1:5432/amends_bench). Its send log is emptied.
3. (a) Runs `manage.py import_sendlog FILE` into the empty table, as a
   subprocess: wall time, rows/s and the peak RSS of the importing process.
4. Exports what (a) stored, already validated and normalised, to
   bench/data/sendlog-N.bare.csv with the table's own columns.
5. (b) Empties the table again and loads that file with a bare
   `psql -c "\\copy incidents_sendlogentry(...) FROM … CSV HEADER"`: same rows,
   same table, same indexes, and none of our parsing, validation or normalising.
6. Prints both and the ratio ours/bare in rows/s (target ≥ 0.5), and peak RSS
   (target < 300 MB). Optionally (--rerun) a second import of the same file,
   which must insert nothing.
"""

import argparse
import re
import subprocess
import sys

from common import (
    DATA,
    PYTHON,
    ROOT,
    database_url,
    django_env,
    ensure_database,
    machine,
    migrate,
    psql,
    require,
    run_measured,
)

TABLE = "incidents_sendlogentry"
COLUMNS = (
    "message_id, recipient, address, customer_id, template, tags, sent_at, locale, "
    "metadata, status, source, created_at"
)
TARGET_RATIO = 0.5
TARGET_RSS_MB = 300


def empty_table(url: str) -> None:
    # CHECKPOINT so neither run pays for the other's dirty pages.
    psql(url, "-c", f"TRUNCATE {TABLE} RESTART IDENTITY", "-c", "CHECKPOINT")


def count_rows(url: str) -> int:
    return int(psql(url, "-tAc", f"SELECT count(*) FROM {TABLE}", capture=True))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--file", default="", help="Default: bench/data/sendlog-ROWS.csv")
    parser.add_argument(
        "--rerun", action="store_true", help="Also time a second, idempotent import."
    )
    args = parser.parse_args(argv)
    require("psql")
    source = DATA / (args.file or f"sendlog-{args.rows}.csv")
    if not source.exists():
        print(f"Generating {source} …", file=sys.stderr)
        subprocess.run(
            [PYTHON, "bench/generate_sendlog.py", "--rows", str(args.rows), "--out", str(source)],
            cwd=ROOT,
            check=True,
        )
    url = database_url()
    ensure_database(url)
    migrate(url)
    env = django_env(url)
    size_gb = source.stat().st_size / 1e9

    print(f"Machine: {machine()}", file=sys.stderr)
    empty_table(url)
    command = [PYTHON, "manage.py", "import_sendlog", "--skip-checks", str(source)]
    print(f"(a) {' '.join(command)}", file=sys.stderr)
    ours = run_measured(command, env=env)
    rows = int(re.search(r"rows read:\s+([\d,]+)", ours.stdout).group(1).replace(",", ""))
    inserted = count_rows(url)
    print(ours.stdout, file=sys.stderr)

    rerun = None
    if args.rerun:
        print("(a') the same import again", file=sys.stderr)
        rerun = run_measured(command, env=env)
        assert count_rows(url) == inserted, "the second import changed the table"

    bare_file = source.with_suffix(".bare.csv")
    psql(
        url, "-c", f"\\copy (SELECT {COLUMNS} FROM {TABLE} ORDER BY id) TO '{bare_file}' CSV HEADER"
    )
    empty_table(url)
    copy = f"\\copy {TABLE}({COLUMNS}) FROM '{bare_file}' CSV HEADER"
    print(f'(b) psql -c "{copy}"', file=sys.stderr)
    bare = run_measured(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", copy])
    bare_rows = count_rows(url)

    ours_rate, bare_rate = rows / ours.seconds, bare_rows / bare.seconds
    ratio = ours_rate / bare_rate
    print()
    print(f"File: {source.name}, {rows:,} rows, {size_gb:.2f} GB; machine: {machine()}")
    print(f"{'':34} {'seconds':>9} {'rows/s':>10} {'peak RSS':>10}")
    print(
        f"{'(a) import_sendlog':34} {ours.seconds:9.1f} {ours_rate:10,.0f} {ours.peak_rss_mb:8.0f} MB"
    )
    if rerun:
        print(
            f"{'(a) again (all duplicates)':34} {rerun.seconds:9.1f} "
            f"{rows / rerun.seconds:10,.0f} {rerun.peak_rss_mb:8.0f} MB"
        )
    print(f"{'(b) bare psql \\copy':34} {bare.seconds:9.1f} {bare_rate:10,.0f}")
    ok_ratio, ok_rss = ratio >= TARGET_RATIO, ours.peak_rss_mb < TARGET_RSS_MB
    print(
        f"ours/bare rows/s: {ratio:.2f} (target ≥ {TARGET_RATIO}) {'ok' if ok_ratio else 'MISSED'}"
    )
    print(
        f"peak RSS: {ours.peak_rss_mb:.0f} MB (target < {TARGET_RSS_MB} MB) "
        f"{'ok' if ok_rss else 'MISSED'}"
    )
    print(f"inserted {inserted:,} of {rows:,} rows; the bare copy loaded {bare_rows:,}")
    if not (ok_ratio and ok_rss):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
