"""Chaos for sending (issue 5): real rq workers SIGKILLed at random, Redis flushed, then recovery.

Shared by tests/test_chaos.py (one bounded run in the suite) and bench/chaos.py
(many longer runs). Everything is real but the ESP: `manage.py rqworker send`
subprocesses on the real Redis and PostgreSQL, anymail's real Postmark backend,
and tests/esp_stub.py in this process, which counts every message it takes per
delivery id.

One run (`run_chaos`):

- starts the workers, launches the campaign (its jobs go to Redis on commit);
- at random points of the send (spread over 5%–90% of the recipients, so kills
  are apart) SIGKILLs every worker (the rq worker and its work horse:
  tests/chaos_workers.py), in most rounds from inside the stub right after it
  flushed a 200 to a worker (the message is taken, the worker has not recorded
  it: the window the guarantee is about), otherwise at a random moment (a
  claim, a render, a hand-over, a release…); restarts them after a short
  random pause;
- FLUSHes the run's own Redis database once (every queued job is gone);
- sweeps every half second, as cron would, with short leases;
- right after each kill, once PostgreSQL has no connection of the dead workers
  left, notes the deliveries that were handed to the ESP (by their claim) and not
  recorded (`sending`): the messages in flight at the kill;
- stops when the campaign is completed, then checks the invariants (`check`).
"""

import random
import threading
import time
from dataclasses import dataclass, field

from tests.chaos_workers import WorkerPool, await_gone

CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": "Dear {{ first_name|default('customer') }}, we are sorry. "
        "Your code: {{ verification_code }}. {{ incident_reference }}",
        "html": "<p>Dear {{ first_name|default('customer') }}, we are sorry.</p>"
        "<p>Your code: {{ verification_code }}</p>",
    },
    "de": {
        "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
        "text": "Entschuldigung. Code: {{ verification_code }}",
        "html": "",
    },
}


@dataclass(frozen=True)
class ChaosConfig:
    recipients: int = 5000
    workers: int = 2
    kill_rounds: int = 5  # each SIGKILLs every worker: 10 kills with 2 workers
    window_rounds: int = 3  # of which, between the ESP's answer and the commit
    flushes: int = 1
    rejected: int = 25  # addresses the stub refuses for good (Postmark 406): failed
    suppressed: int = 25  # suppressed before launch
    transient: int = 25  # answered 503 once, then taken (retried with backoff)
    batch_size: int = 100
    concurrency: int = 8
    lease_seconds: int = 8
    sweep_every: float = 0.5
    timeout: float = 300.0  # a safety net: a quiet 2-core machine needs well under a minute
    seed: int = 0


@dataclass
class ChaosResult:
    recipients: int = 0
    kills: int = 0  # worker processes SIGKILLed
    window_kills: int = 0  # rounds fired by the stub right after a 200
    window_hits: int = 0  # … of which the taken message was indeed not recorded yet
    flushes: int = 0
    unexpected_exits: int = 0  # workers that died without being killed
    counts: dict[str, int] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)  # handed, not recorded, at a kill
    taken_in_flight: set[int] = field(default_factory=set)  # … and taken by the stub
    requeued: int = 0  # never handed, queued again by the sweeper
    duplicates: dict[str, int] = field(default_factory=dict)  # delivery id → times taken
    taken: int = 0
    seconds: float = 0.0
    resume_seconds: list[float] = field(default_factory=list)  # a kill → the next message taken
    recovery_seconds: float = 0.0  # from the last kill or flush to completion
    violations: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        c = self.counts
        return {
            "recipients": self.recipients,
            "kills": self.kills,
            "window_kills": self.window_kills,
            "window_hits": self.window_hits,
            "flushes": self.flushes,
            "sent": c.get("sent", 0),
            "failed": c.get("failed", 0),
            "suppressed": c.get("suppressed", 0),
            "uncertain": c.get("uncertain", 0),
            "in_flight": len(self.in_flight),
            "taken_in_flight": len(self.taken_in_flight),
            "requeued": self.requeued,
            "duplicates": len(self.duplicates),
            "seconds": round(self.seconds, 1),
            "resume_seconds": round(max(self.resume_seconds, default=0.0), 1),
            "recovery_seconds": round(self.recovery_seconds, 1),
            "unexpected_exits": self.unexpected_exits,
        }


# --- A campaign to break ---------------------------------------------------------------------


def prepare(*, incident, author, approver, recipients: int, tag: str):
    """`recipients` people frozen the real way (a send log, then audience_freeze) and an
    approved apology for their segment. Returns (segment, version, people in id order)."""
    from campaigns import services
    from incidents.actors import Actor
    from incidents.addresses import normalise
    from incidents.filters import AudienceFilter
    from incidents.models import AffectedPerson, SendLogEntry
    from incidents.services import audience_freeze
    from incidents.services.audience import default_segment
    from tests.factories import T0

    template = f"chaos-{tag}"
    SendLogEntry.objects.bulk_create(
        SendLogEntry(
            message_id=f"{template}-{i}",
            recipient=f"Person{i}.{tag}@Example.com",
            address=normalise(f"Person{i}.{tag}@Example.com"),
            template=template,
            sent_at=T0,
            locale="de" if i % 3 == 0 else "en",
            metadata={"first_name": f"P{i}"},
        )
        for i in range(recipients)
    )
    audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict({"template": template}),
        by=Actor.for_user(author),
    )
    segment = default_segment(incident)
    version = services.version_create(
        by=Actor.for_user(author),
        segment=segment,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT,
    )
    services.version_approve(version=version, by=Actor.for_user(approver))
    people = list(AffectedPerson.objects.filter(incident=incident).order_by("id"))
    return segment, version, people


def script_stub(stub, people, config: ChaosConfig, rng: random.Random, *, by) -> set[str]:
    """Refusals, transient errors and suppressions on random people; returns suppressed addresses."""
    from campaigns import services

    chosen = rng.sample(people, config.rejected + config.transient + config.suppressed)
    rejected = chosen[: config.rejected]
    transient = chosen[config.rejected : config.rejected + config.transient]
    suppressed = chosen[config.rejected + config.transient :]
    for person in rejected:
        stub.reject(person.original_address.strip())
    for person in transient:
        stub.answer_next(503, address=person.original_address.strip())
    for person in suppressed:
        services.suppression_add(address=person.address, reason="complaint", source="manual", by=by)
    return {p.address for p in suppressed}


# --- The run ---------------------------------------------------------------------------------


def _plan(config: ChaosConfig, rng: random.Random) -> list[tuple[int, str]]:
    """(stub's taken count, event) pairs: one event in each of equal slots of 5%–90%."""
    kinds = ["window"] * config.window_rounds
    kinds += ["timer"] * (config.kill_rounds - config.window_rounds)
    kinds += ["flush"] * config.flushes
    rng.shuffle(kinds)
    low, high = 0.05 * config.recipients, 0.9 * config.recipients
    width = (high - low) / max(1, len(kinds))
    return [(int(low + width * (i + rng.random())), kind) for i, kind in enumerate(kinds)]


def _in_flight(campaign_id: int) -> set[int]:
    from campaigns.models import Delivery
    from campaigns.sending.claims import handed_over

    in_flight = Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.SENDING)
    return set(handed_over(in_flight).values_list("id", flat=True))


def run_chaos(
    *, campaign_launch, stub, pool: WorkerPool, config: ChaosConfig, rng, flush, app_name: str
):
    """Launch (`campaign_launch()` returns the campaign), break things, recover; a ChaosResult.

    `flush()` empties the run's own Redis database. The sweeper runs in this
    process, with this process's settings (SWEEP_STALE_SECONDS short).
    """
    from campaigns.models import Campaign
    from campaigns.sending import sweep

    result = ChaosResult()
    armed = threading.Event()
    fired: list[str] = []  # delivery ids whose 200 triggered a window kill
    kill_lock = threading.Lock()

    def on_accept(payload):
        # In the stub's handler thread, right after the 200 went out on the socket.
        if armed.is_set():
            with kill_lock:
                if armed.is_set():
                    armed.clear()
                    fired.append(str((payload.get("Metadata") or {}).get("delivery_id", "")))
                    pool.kill_all()

    stub.on_accept = on_accept
    # A killed worker leaves the stub a broken pipe now and then: expected, not worth a traceback.
    stub._server.handle_error = lambda request, client_address: None
    plan = _plan(config, rng)
    started = time.monotonic()
    pool.start()
    campaign = campaign_launch()
    last_disruption = started
    last_sweep = last_watch = 0.0
    seen_kills = 0
    restart_at: float | None = None
    resume_from: tuple[float, int] | None = None
    try:
        while True:
            now = time.monotonic()
            if now - started > config.timeout:
                result.violations.append(f"not recovered within {config.timeout:.0f} s")
                break
            while plan and stub.taken >= plan[0][0]:
                _, kind = plan.pop(0)
                if kind == "flush":
                    flush()
                    result.flushes += 1
                    last_disruption = time.monotonic()
                elif kind == "window":
                    result.window_kills += 1
                    armed.set()
                else:
                    time.sleep(rng.random() * 0.05)
                    with kill_lock:
                        pool.kill_all()
            with kill_lock:  # the stub cannot kill meanwhile
                if pool.killed != seen_kills:
                    # Every worker is dead: only this thread changes rows until the restart.
                    seen_kills = pool.killed
                    await_gone(app_name)
                    handed = _in_flight(campaign.pk)
                    result.in_flight |= handed
                    result.taken_in_flight |= {pk for pk in handed if stub.accepted[str(pk)]}
                    for delivery_id in fired:
                        result.window_hits += delivery_id.isdigit() and int(delivery_id) in handed
                    fired.clear()
                    last_disruption = time.monotonic()
                    restart_at = last_disruption + rng.random() * 0.3
                    resume_from = (last_disruption, stub.taken)
                if restart_at is None or time.monotonic() >= restart_at:
                    restart_at = None
                    pool.restart()  # also replaces a worker that died by itself (counted)
            if resume_from is not None and stub.taken > resume_from[1]:
                result.resume_seconds.append(time.monotonic() - resume_from[0])
                resume_from = None
            if now - last_watch >= 0.1:
                last_watch = now
                pool.watch()
            if now - last_sweep >= config.sweep_every:
                last_sweep = now
                result.requeued += sweep()["requeued"]
                status = Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
                if status == Campaign.Status.COMPLETED:
                    if plan or armed.is_set():
                        result.violations.append(f"finished before {len(plan)} events fired")
                    break
            time.sleep(0.02)
    finally:
        armed.clear()
        stub.on_accept = None
        result.kills = pool.killed  # not the workers stopped below
        pool.stop()
    finished = time.monotonic()
    result.seconds = finished - started
    result.recovery_seconds = finished - last_disruption
    result.unexpected_exits = pool.unexpected_exits
    result.taken = stub.taken
    return campaign, result


def check(campaign, stub, result: ChaosResult, *, segment_size: int, suppressed: set[str]):
    """The guarantee, as assertions on the database and the stub; fills `result`, returns it."""
    from campaigns.models import Delivery

    Status = Delivery.Status
    rows = list(
        campaign.deliveries.values_list("id", "status", "esp_message_id", "person__address")
    )
    counts: dict[str, int] = {}
    for _, status, _, _ in rows:
        counts[status] = counts.get(status, 0) + 1
    result.counts = counts
    result.recipients = len(rows)
    result.duplicates = {k: n for k, n in stub.accepted.items() if n > 1}
    v = result.violations
    if result.duplicates:
        v.append(f"the stub took {len(result.duplicates)} recipients more than once")
    pending = {s: n for s, n in counts.items() if s in (Status.QUEUED, Status.SENDING)}
    if pending:
        v.append(f"not every delivery is final or uncertain: {pending}")
    accounted = sum(counts.get(s, 0) for s in ("sent", "failed", "suppressed", "uncertain"))
    if accounted != segment_size or len(rows) != segment_size:
        v.append(f"sent+failed+suppressed+uncertain = {accounted}, segment = {segment_size}")
    uncertain = {pk for pk, status, _, _ in rows if status == Status.UNCERTAIN}
    if not uncertain <= result.in_flight:
        stray = Delivery.objects.filter(pk__in=uncertain - result.in_flight)
        errors = sorted({e.splitlines()[0][:200] for e in stray.values_list("error", flat=True)})
        v.append(
            f"{len(uncertain - result.in_flight)} uncertain rows were not in flight at a kill: "
            f"{errors[:3]}"
        )
    for pk, status, message_id, address in rows:
        taken = stub.accepted[str(pk)]
        if status == Status.SENT and (taken != 1 or not message_id):
            v.append(f"delivery {pk} is sent, but the stub took it {taken} times")
        elif status in (Status.FAILED, Status.SUPPRESSED) and taken:
            v.append(f"delivery {pk} is {status}, but the stub took it")
        elif status == Status.SUPPRESSED and address not in suppressed:
            v.append(f"delivery {pk} is suppressed, but its address was not")
    if result.unexpected_exits:
        v.append(f"{result.unexpected_exits} workers died without being killed")
    return result
