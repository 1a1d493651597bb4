"""Benchmark: the ESP client library alone, with none of Amends' work around it.

    python bench/bench_esp_client.py [--threads 32] [--delay 0.1] [--messages 2000]

THREADS threads each open anymail's real Postmark backend (requests underneath)
and send their share of MESSAGES small messages, one recipient each, to the
Postmark stub of the tests (tests/esp_stub.py) with DELAY seconds added to every
call. No database, no rendering, no claims or records: only building the
EmailMessage, anymail's payload and the HTTP call.

It reports the messages/s and the senders' own CPU a message (their threads'
`time.thread_time`, so the stub's work in this process is left out). That CPU is
a floor under what a sending worker spends a message against an HTTP ESP
(bench_send.py latency), whatever Amends does.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402  (sets DEBUG off first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds added to every call")
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["AMENDS_NO_BOOTSTRAP"] = "1"
    import django

    django.setup()
    from anymail.backends.postmark import EmailBackend
    from django.core.mail import EmailMultiAlternatives

    from tests.esp_stub import TOKEN, PostmarkStub

    stub = PostmarkStub().start()
    stub.delay = args.delay
    per_thread = max(1, args.messages // args.threads)
    cpu: list[float] = []

    def sender(index: int) -> None:
        started = time.thread_time()
        backend = EmailBackend(server_token=TOKEN, api_url=stub.url, timeout=5)
        backend.open()
        for n in range(per_thread):
            message = EmailMultiAlternatives(
                "We are sorry about the email you got from us",
                "Dear customer,\n\n" + "You received an email that was not meant for you. " * 8,
                "Amends Care <care@retailer.example>",
                [f"person{index}-{n}@example.com"],
                reply_to=["help@retailer.example"],
            )
            message.attach_alternative("<p>" + "You received an email. " * 8 + "</p>", "text/html")
            message.metadata = {"delivery_id": f"{index}-{n}", "incident": "INC-2026-0001"}
            message.tags = ["INC-2026-0001"]
            backend.send_messages([message])
        backend.close()
        cpu.append(time.thread_time() - started)

    print(machine())
    threads = [threading.Thread(target=sender, args=(i,)) for i in range(args.threads)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    stub.stop()
    sent = per_thread * args.threads
    assert stub.taken == sent, (stub.taken, sent)
    print(
        f"{args.threads} threads, +{args.delay * 1000:.0f} ms a call: {sent:,} messages in "
        f"{wall:.2f} s, {sent / wall:,.0f} messages/s; senders' CPU "
        f"{sum(cpu) / sent * 1e6:,.0f} µs a message"
    )


if __name__ == "__main__":
    main()
