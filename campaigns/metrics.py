"""Operator metrics for Prometheus at /metrics (docs/operations.md, "Metrics and alerts").

Nothing is counted in process memory: each value is read from PostgreSQL or
Redis when Prometheus scrapes, so every web process answers alike and a restart
loses nothing. Each read is bounded by an index:

- deliveries per status: a grouped count over the campaigns still going (an
  index-only scan of `delivery_campaign_status`); campaigns that finished longer
  ago than the unconfirmed window come from the shared cache, recounted every
  five minutes, so a scrape does not grow with history. Sent deliveries are the
  statuses that mean "handed to and accepted by the ESP", which a delivery
  never leaves, so their sum is a true counter;
- unconfirmed deliveries: `sent` rows older than the window, found per
  campaign through the same index (only the rows still `sent` are read);
- webhook events per ESP: a running count kept in the shared cache, advanced
  each scrape over the rows added since (a primary-key range), never a count
  of the whole table after the first scrape;
- the apply lag: the partial index of unapplied events (`event_not_applied`),
  and the newest applied events by primary key.

Access: a bearer token from METRICS_TOKEN, or a logged-in user with
incidents.view_metrics (the Admin role). Anyone else gets 401 (no or wrong
credentials) or 403 (logged in without the permission).
"""

import hashlib
import hmac
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import caches
from django.db.models import Count, Max, Min
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from campaigns.models import ACCEPTED, Campaign, Delivery, DeliveryEvent

log = logging.getLogger(__name__)

PERMISSION = "incidents.view_metrics"
# Events are counted once they are this old: an event id handed out just before a
# scrape may still be in an uncommitted transaction, and would be skipped for good.
EVENT_SETTLE_SECONDS = 30
# The apply lag is measured over applied events among the newest this many ids,
# received within the last LAG_WINDOW.
LAG_SAMPLE_IDS = 2000
LAG_WINDOW = timedelta(minutes=15)
_EVENTS_STATE_KEY = "metrics:webhook-events:v1"
# A campaign finished longer ago than the unconfirmed window is recounted this often.
SETTLED_TTL = 300
_FINISHED = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)


def _gauge(name: str, doc: str, labels: list[str] | None = None, value=None):
    return GaugeMetricFamily(name, doc, value=value, labels=labels)


class AmendsCollector:
    """Computes every metric at scrape time; see the module docstring for the costs."""

    def __init__(self, now=None):
        self.now = now or timezone.now()

    def collect(self):
        started = time.monotonic()
        yield from self._campaigns()
        yield from self._events()
        yield from self._queues()
        yield _gauge(
            "amends_metrics_collect_seconds",
            "Seconds this scrape took to compute (the database and Redis reads).",
            value=time.monotonic() - started,
        )

    # --- Campaigns and deliveries ------------------------------------------------
    def _campaigns(self):
        campaigns = list(Campaign.objects.order_by().values_list("pk", "status", "finished_at"))
        family = _gauge("amends_campaigns", "Campaigns by status.", ["status"])
        for status in Campaign.Status.values:
            family.add_metric([status], sum(1 for _, s, _ in campaigns if s == status))
        yield family
        minutes = getattr(settings, "RECONCILE_UNCONFIRMED_AFTER_MINUTES", 60)
        counts, unconfirmed = _delivery_counts(campaigns, now=self.now, minutes=minutes)
        family = _gauge("amends_deliveries", "Deliveries by status.", ["status"])
        for status in Delivery.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family
        yield CounterMetricFamily(
            "amends_deliveries_sent",
            "Deliveries the ESP accepted, ever (sent and the ESP's later states); "
            "rate() of it is the send rate.",
            value=sum(counts.get(status, 0) for status in ACCEPTED),
        )
        yield _gauge(
            "amends_deliveries_unconfirmed",
            f"Deliveries still `sent` (no ESP event) {minutes} minutes after they were sent.",
            value=unconfirmed,
        )

    # --- Webhook events -------------------------------------------------------------
    def _events(self):
        counts = _event_counts(self.now)
        family = CounterMetricFamily(
            "amends_webhook_events",
            f"ESP webhook events stored, per ESP (counted once {EVENT_SETTLE_SECONDS} s old).",
            labels=["esp"],
        )
        for esp, n in sorted(counts.items()):
            family.add_metric([esp], n)
        yield family

        backlog = DeliveryEvent.objects.filter(applied_at__isnull=True).aggregate(
            n=Count("id"), oldest=Min("received_at")
        )
        yield _gauge(
            "amends_webhook_events_unapplied",
            "Stored webhook events not yet applied to their deliveries.",
            value=backlog["n"],
        )
        oldest = backlog["oldest"]
        yield _gauge(
            "amends_webhook_oldest_unapplied_event_age_seconds",
            "Age of the oldest stored event not yet applied (0 when none is waiting).",
            value=max(0.0, (self.now - oldest).total_seconds()) if oldest else 0.0,
        )

        lags = _recent_apply_lags(self.now)
        family = _gauge(
            "amends_webhook_apply_lag_seconds",
            "Seconds from receiving an event to applying it, over the newest applied "
            f"events of the last {int(LAG_WINDOW.total_seconds() // 60)} minutes.",
            ["quantile"],
        )
        for quantile in ("0.5", "0.95", "1"):
            family.add_metric([quantile], _quantile(lags, float(quantile)))
        yield family
        yield _gauge(
            "amends_webhook_apply_lag_sample_events",
            "How many applied events amends_webhook_apply_lag_seconds was computed from.",
            value=len(lags),
        )

    # --- Queues ------------------------------------------------------------------------
    def _queues(self):
        if not settings.REDIS_URL:
            return  # the embedded mode runs jobs in-process: there are no queues
        depth = _gauge("amends_rq_queue_jobs", "Jobs waiting in each rq queue.", ["queue"])
        failed = _gauge("amends_rq_failed_jobs", "Jobs in each queue's failed registry.", ["queue"])
        up = 1
        try:
            import django_rq
            from rq import Worker

            for name in settings.RQ_QUEUES:
                queue = django_rq.get_queue(name)
                depth.add_metric([name], queue.count)
                failed.add_metric([name], queue.failed_job_registry.count)
            workers = Worker.count(connection=django_rq.get_connection("default"))
        except Exception as exc:  # noqa: BLE001 - a Redis outage is a metric, not a 500
            log.warning("Metrics could not read rq: %s", exc.__class__.__name__)
            up = 0
        yield _gauge("amends_redis_up", "1 when Redis answered this scrape, else 0.", value=up)
        if up:
            yield depth
            yield failed
            yield _gauge("amends_rq_workers", "rq workers registered in Redis.", value=workers)


def _delivery_counts(campaigns, *, now, minutes: int) -> tuple[dict[str, int], int]:
    """Deliveries per status over every campaign, and how many are unconfirmed.

    Campaigns that are still going, or finished within the window, are counted
    now through the (campaign, status) index. A campaign that finished longer ago
    changes little (late ESP events, a human decision on an uncertain delivery):
    its counts come from the shared cache, recounted every SETTLED_TTL seconds, so
    a scrape does not grow with history. All of its `sent` rows were sent before
    it finished, so they are all unconfirmed by now.
    """
    cutoff = now - timedelta(minutes=minutes)
    live, settled = [], {}
    for pk, status, finished_at in campaigns:
        if status in _FINISHED and finished_at and finished_at < cutoff:
            settled[f"metrics:campaign:{pk}:{finished_at.timestamp()}"] = pk
        else:
            live.append(pk)
    totals: dict[str, int] = {}

    def add(status, n):
        totals[status] = totals.get(status, 0) + n

    unconfirmed = 0
    if live:
        rows = Delivery.objects.filter(campaign_id__in=live).order_by().values_list("status")
        for status, n in rows.annotate(n=Count("id")):
            add(status, n)
        unconfirmed = Delivery.objects.filter(
            campaign_id__in=live, status=Delivery.Status.SENT, sent_at__lt=cutoff
        ).count()
    if settled:
        cache = _shared_cache()
        try:
            cached = cache.get_many(list(settled))
        except Exception:  # noqa: BLE001 - count them now instead
            cached = {}
        missing = {pk: key for key, pk in settled.items() if key not in cached}
        if missing:
            fresh: dict[int, dict[str, int]] = {pk: {} for pk in missing}
            rows = (
                Delivery.objects.filter(campaign_id__in=list(missing))
                .order_by()
                .values_list("campaign_id", "status")
                .annotate(n=Count("id"))
            )
            for pk, status, n in rows:
                fresh[pk][status] = n
            new = {missing[pk]: per_status for pk, per_status in fresh.items()}
            cached |= new
            try:
                cache.set_many(new, timeout=SETTLED_TTL)
            except Exception:  # noqa: BLE001
                log.warning("Metrics could not store campaign counts")
        for per_status in cached.values():
            for status, n in per_status.items():
                add(status, n)
            unconfirmed += per_status.get(Delivery.Status.SENT, 0)
    return totals, unconfirmed


def _shared_cache():
    """The shared cache, or this process's own when it cannot be reached."""
    cache = caches["shared"]
    try:
        cache.get("metrics:ping")
    except Exception:  # noqa: BLE001 - Redis down: keep counting, per process
        return caches["default"]
    return cache


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _recent_apply_lags(now) -> list[float]:
    top = DeliveryEvent.objects.aggregate(m=Max("id"))["m"] or 0
    rows = DeliveryEvent.objects.filter(
        id__gt=top - LAG_SAMPLE_IDS,
        applied_at__isnull=False,
        received_at__gte=now - LAG_WINDOW,
    ).values_list("received_at", "applied_at")
    return sorted(max(0.0, (applied - received).total_seconds()) for received, applied in rows)


def _event_counts(now) -> dict[str, int]:
    """Events per ESP: the stored running count, advanced over the rows added since.

    The count and its watermark (the highest id counted) live in the shared cache,
    so all web processes report the same, rising numbers. Ids are counted once
    EVENT_SETTLE_SECONDS old, so no transaction still holds a lower one. Two scrapes
    at once each count from the stored watermark to their own and the later write
    wins: both answers are exact up to their watermarks, so nothing is counted twice.
    """
    cache = _shared_cache()
    state = cache.get(_EVENTS_STATE_KEY)
    last, counts = (state["last_id"], dict(state["counts"])) if state else (0, {})
    top = DeliveryEvent.objects.aggregate(m=Max("id"))["m"] or 0
    if last > top:  # the table was emptied or restored: count it again
        last, counts = 0, {}
    settled = DeliveryEvent.objects.filter(
        id__gt=last, received_at__lt=now - timedelta(seconds=EVENT_SETTLE_SECONDS)
    ).aggregate(m=Max("id"))["m"]
    if settled:
        rows = (
            DeliveryEvent.objects.filter(id__gt=last, id__lte=settled)
            .order_by()
            .values_list("esp")
            .annotate(n=Count("id"))
        )
        for esp, n in rows:
            counts[esp] = counts.get(esp, 0) + n
        try:
            cache.set(_EVENTS_STATE_KEY, {"last_id": settled, "counts": counts}, None)
        except Exception:  # noqa: BLE001
            log.warning("Metrics could not store the webhook event count")
    return counts


# --- Access and the view ------------------------------------------------------------------


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def token_is_valid(token: str) -> bool:
    """True when `token` is one of METRICS_TOKENS, compared in constant time."""
    valid = False
    for expected in settings.METRICS_TOKENS:
        valid |= hmac.compare_digest(_digest(token), _digest(expected))
    return valid and bool(token)


def _bearer(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _refused(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="amends-metrics"'
    return response


@login_not_required  # Prometheus has no session; the view checks its own credentials
@never_cache
@require_GET
def metrics_view(request):
    token = _bearer(request)
    if token is not None:
        if not token_is_valid(token):
            return _refused(401, "The bearer token is not one of METRICS_TOKEN.")
    elif not request.user.is_authenticated:
        return _refused(401, "Send a bearer token (METRICS_TOKEN) or log in.")
    elif not request.user.has_perm(PERMISSION):
        return _refused(403, f"Your role does not allow this ({PERMISSION}).")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AmendsCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
