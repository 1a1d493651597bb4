"""What one ESP event does to one delivery: the rules, as pure functions on a small state.

Events arrive late, twice and out of order. A delivery's status only moves
"up" this ladder, so whatever order the events come in, it ends on the most
final thing the ESP said:

    queued/sending/uncertain (0) < sent (1) < deferred (2) < delivered (3)
        < soft bounce, rejected, failed (4) < hard bounce (5) < complaint (6)

- Only moves in DELIVERY_TRANSITIONS are made (suppressed and cancelled
  deliveries were never sent: events change nothing on them).
- `sent` and `deferred` older than the latest applied event change nothing
  (a late deferral after a retry); evidence of delivery or of a bounce always
  counts, so a bounce after `delivered` is recorded as the bounce.
- A delivery sent again after a soft bounce is back at the bottom of the
  ladder; events about the copy before (another message id) can only show it
  was delivered after all.
- A soft bounce is sent again (the same row, queued) while the delivery has
  retries left (SOFT_BOUNCE_RETRIES) and was never delivered; then it is final.
  With DEFERRAL_RETRY a deferral counts as a soft bounce.
- Opens and clicks are flags; they never change the status.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anymail.signals import EventType

from campaigns.models.sending import DELIVERY_TRANSITIONS, DeliveryStatus

S = DeliveryStatus
TARGET = {
    EventType.SENT: S.SENT,
    EventType.DEFERRED: S.DEFERRED,
    EventType.DELIVERED: S.DELIVERED,
    EventType.BOUNCED: S.BOUNCED,
    EventType.REJECTED: S.REJECTED,
    EventType.FAILED: S.FAILED,
    EventType.COMPLAINED: S.COMPLAINED,
}
FLAGS = {EventType.OPENED: "opened", EventType.CLICKED: "clicked"}
_RANK = {
    S.QUEUED: 0,
    S.SENDING: 0,
    S.UNCERTAIN: 0,
    S.SENT: 1,
    S.DEFERRED: 2,
    S.DELIVERED: 3,
    S.REJECTED: 4,
    S.FAILED: 4,
    S.COMPLAINED: 6,
}
FINAL_FAILURES = (S.REJECTED, S.FAILED)


def rank(status: str, bounce_kind: str = "") -> int | None:
    """The status's place on the ladder; None for statuses events never change."""
    if status == S.BOUNCED:
        return 5 if bounce_kind == "hard" else 4
    return _RANK.get(status)


@dataclass
class Policy:
    soft_bounce_retries: int
    retry_delay_seconds: int
    deferral_retry: bool


@dataclass
class Track:
    """The part of a delivery the rules read and write."""

    status: str
    esp_message_id: str = ""
    last_event_at: datetime | None = None
    bounce_kind: str = ""
    delivered_at: datetime | None = None
    sent_at: datetime | None = None
    opened: bool = False
    clicked: bool = False
    soft_bounces: int = 0
    next_attempt_at: datetime | None = None
    error: str = ""
    # What happened, in order: ("delivered" | "unreachable" | "retry", when, note)
    effects: list[tuple[str, datetime, str]] = field(default_factory=list)
    changed: bool = False


def _move(track: Track, status: str) -> bool:
    if status == track.status or status in DELIVERY_TRANSITIONS[track.status]:
        track.status = status
        return True
    return False


def apply_event(
    track: Track,
    *,
    event_type: str,
    occurred_at: datetime,
    message_id: str,
    bounce_kind: str,
    reason: str,
    policy: Policy,
    now: datetime,
) -> str:
    """Apply one event to `track` in memory. Returns the event's outcome (EventOutcome value)."""
    if event_type in FLAGS:
        name = FLAGS[event_type]
        if getattr(track, name):
            return "no_change"
        setattr(track, name, True)
        track.changed = True
        return "applied"
    target = TARGET.get(event_type)
    if target is None:
        return "ignored"
    current = rank(track.status, track.bounce_kind)
    if current is None:
        return "no_change"
    current_id = track.esp_message_id.strip().strip("<>")
    stale = bool(message_id and current_id and message_id != current_id)
    if stale and target != S.DELIVERED:
        return "no_change"  # about a copy sent before a retry
    if track.status == S.QUEUED and target != S.DELIVERED:
        return "no_change"  # nothing of this copy reached the ESP yet
    kind = bounce_kind if target == S.BOUNCED else ""
    new_rank = rank(target, kind)
    if new_rank <= current:
        return "no_change"
    older = track.last_event_at is not None and occurred_at < track.last_event_at
    if older and new_rank <= rank(S.DEFERRED):
        return "no_change"
    retry = (target == S.BOUNCED and kind == "soft") or (
        target == S.DEFERRED and policy.deferral_retry
    )
    if not _move(track, target):
        return "no_change"
    track.changed = True
    track.last_event_at = max(track.last_event_at or occurred_at, occurred_at)
    track.bounce_kind = kind or track.bounce_kind
    if track.sent_at is None:
        track.sent_at = occurred_at
    if not track.esp_message_id and message_id:
        track.esp_message_id = message_id
    if target == S.DELIVERED:
        track.delivered_at = occurred_at
        track.effects.append(("delivered", occurred_at, ""))
        return "applied"
    if retry:
        if (
            track.soft_bounces < policy.soft_bounce_retries
            and track.delivered_at is None
            and _move(track, S.QUEUED)
        ):
            delay = policy.retry_delay_seconds * (2**track.soft_bounces)
            track.soft_bounces += 1
            track.next_attempt_at = now + timedelta(seconds=delay)
            track.error = f"Soft bounce, sent again (retry {track.soft_bounces}): {reason}"[:2000]
            track.effects.append(("retry", occurred_at, reason))
        elif target == S.BOUNCED:
            track.error = f"Soft bounce, no retries left: {reason}"[:2000]
            track.effects.append(("unreachable", occurred_at, f"Soft bounce (final): {reason}"))
        return "applied"
    if target == S.BOUNCED or target in FINAL_FAILURES:
        label = "Hard bounce" if target == S.BOUNCED else target.label
        track.error = f"{label}: {reason}"[:2000]
        track.effects.append(("unreachable", occurred_at, f"{label}: {reason}"))
    elif target == S.COMPLAINED and track.delivered_at is None:
        # A complaint proves it arrived; but without a delivery event we cannot say when.
        track.effects.append(("unreachable", occurred_at, f"Complaint: {reason}"))
    return "applied"
