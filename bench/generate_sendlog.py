"""Generate a realistic ESP send log export as CSV, for the import benchmark.

    .venv/bin/python bench/generate_sendlog.py --rows 10000000

writes bench/data/sendlog-10000000.csv (git-ignored): about a month of sends
across several templates, with the mis-sent "registry-gift-purchased" reaching
about 1,000,000 distinct people (a tenth of the rows, at most) in a two-hour
window. Addresses come in mixed case, some with stray spaces or an IDN domain,
and some people get the registry email two or three times. Rows are in sending
order, as ESP exports are. Streams: memory stays flat. Seeded, so two runs give
the same file.
"""

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
START = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
WINDOW_START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
WINDOW = timedelta(hours=2)
MIS_SENT = "registry-gift-purchased"
TEMPLATES = [  # (template, tags, weight)
    ("weekly-newsletter", "newsletter;marketing", 40),
    ("order-confirmation", "transactional;order", 20),
    ("shipping-update", "transactional;shipping", 15),
    ("cart-reminder", "marketing;cart", 10),
    ("password-reset", "transactional;account", 5),
    ("review-request", "marketing;review", 10),
]
FIRST = [
    "anna",
    "bob",
    "carla",
    "david",
    "emma",
    "femke",
    "gerrit",
    "hanna",
    "ines",
    "jan",
    "klara",
    "lukas",
    "marie",
    "noah",
    "olga",
    "paul",
]
LAST = [
    "schmidt",
    "jansen",
    "dubois",
    "martin",
    "de-vries",
    "smith",
    "bakker",
    "muller",
    "bernard",
    "visser",
    "meyer",
    "petit",
]
LOCALES = {"en": ["example.com", "mail.example.org"], "de": ["beispiel.de", "example.de"]}
LOCALES |= {"fr": ["exemple.fr", "courriel.example.fr"], "nl": ["voorbeeld.nl", "example.nl"]}
IDN_DOMAIN = "bücher.de"


def person(n: int, rnd: random.Random) -> tuple[str, str, str, str]:
    """(address as sent, customer id, locale, first name) of customer n, in a random case."""
    locale = ("en", "de", "fr", "nl")[n % 4]
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
    domains = LOCALES[locale]
    domain = IDN_DOMAIN if n % 97 == 0 else domains[n % len(domains)]
    address = f"{first}.{last}{n}@{domain}"
    r = rnd.random()
    if r < 0.3:
        address = address.title()  # Anna.Schmidt12@Example.Com
    elif r < 0.35:
        address = address.upper()
    elif r < 0.36:
        address = f" {address} "
    return address, f"C{n:09d}", locale, first.title()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--people", type=int, default=0, help="Registry recipients (default: min(1M, rows/10))."
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args(argv)
    rows = args.rows
    people = args.people or max(1, min(1_000_000, rows // 10))
    out = args.out or DATA / f"sendlog-{rows}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(args.seed)
    started = time.monotonic()

    # The registry email goes to `people` people, some two or three times.
    repeats = [
        1 + (rnd.random() < 0.15) + (rnd.random() < 0.05) for _ in range(min(people, 100_000))
    ]
    registry_rows = sum(repeats[i % len(repeats)] for i in range(people))
    registry_rows = min(registry_rows, rows)
    other_rows = rows - registry_rows
    population = max(people * 3, 10)  # customers overall; registry recipients are among them
    weights = [w for _, _, w in TEMPLATES]
    choices = rnd.choices(range(len(TEMPLATES)), weights=weights, k=4096)

    # Other templates spread over the month; the registry burst fills the window.
    before = int(other_rows * ((WINDOW_START - START) / SPAN))
    step = SPAN / max(other_rows, 1)
    burst_step = WINDOW / max(registry_rows, 1)

    # Rows are written as text, not with csv.writer: only the metadata needs quoting,
    # and it is one of a few precomputed strings. Timestamps change once a second.
    metas = {
        (has, clicked, first.title()): '"{}"'.format(
            json.dumps(
                {"has_registry": has, "clicked": clicked, "first_name": first.title()}
            ).replace('"', '""')
        )
        for has in (False, True)
        for clicked in (False, True)
        for first in FIRST
    }
    random_ = rnd.random
    seq = 0
    last_second, stamp = None, ""
    buffer: list[str] = []

    with open(out, "w", newline="", encoding="utf-8", buffering=1 << 20) as f:
        f.write("message_id,recipient,customer_id,template,tags,sent_at,locale,metadata\n")

        def emit(template: str, tags: str, n: int, at: datetime, registry: bool) -> None:
            nonlocal seq, last_second, stamp
            seq += 1
            address, customer, locale, first = person(n, rnd)
            second = int(at.timestamp())
            if second != last_second:
                last_second, stamp = second, at.isoformat(timespec="seconds").replace("+00:00", "Z")
            meta = metas[(registry and n % 50 == 0, random_() < 0.1, first)]
            buffer.append(
                f"<{seq:011d}.{n:x}@mta.esp.example>,{address},{customer},{template},{tags},{stamp},{locale},{meta}\n"
            )
            if len(buffer) >= 10_000:
                f.writelines(buffer)
                buffer.clear()

        at = START
        for i in range(before):
            template, tags, _ = TEMPLATES[choices[i & 4095]]
            emit(template, tags, int(random_() * population), at, False)
            at += step
        at = WINDOW_START
        emitted = 0
        for i in range(people):
            for _ in range(repeats[i % len(repeats)]):
                if emitted == registry_rows:
                    break
                emit(MIS_SENT, "registry;notification", i * 3, at, True)
                emitted += 1
                at += burst_step
        at = max(at, WINDOW_START + WINDOW)
        for i in range(before, other_rows):
            template, tags, _ = TEMPLATES[choices[i & 4095]]
            emit(template, tags, int(random_() * population), at, False)
            at += step
        f.writelines(buffer)

    seconds = time.monotonic() - started
    size = out.stat().st_size
    print(
        f"Wrote {out} ({seq:,} rows, {size / 1e9:.2f} GB) in {seconds:.1f} s: "
        f"{MIS_SENT} to {people:,} people in {registry_rows:,} rows.",
        file=sys.stderr,
    )
    print(out)


if __name__ == "__main__":
    main()
