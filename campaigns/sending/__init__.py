"""The worker side of sending: claim deliveries, send them through the ESP, record the answer.

The one door to the ESP for apologies. The database is the source of truth:

- A job covers an id range of one campaign's deliveries. It claims due, queued
  rows with one conditional UPDATE (PostgreSQL: FOR UPDATE SKIP LOCKED), which
  sets them `sending` with a lease. Two jobs for one range (a re-enqueue, a
  duplicate) claim disjoint rows; a claimed row is never claimed again.
- Threads send the claimed rows (SEND_CONCURRENCY ESP calls in flight). Right
  before each ESP call a row is marked handed over (claims.HandOver: a
  conditional UPDATE, group-committed across the threads); answers go to one
  writer thread (recorder.py) that records many with one conditional UPDATE,
  only while the row is still `sending` under the claim that sent it.
- A row whose ESP answer was lost (a killed worker, a timeout after the request
  left) is never sent again by the machine: the sweeper marks it `sent` when
  there is evidence the ESP took it, else `uncertain`, for a person to decide.
  A claimed row that was never handed over goes back to the queue.

See docs/sending.md for the guarantee and the error handling.
"""

from campaigns.sending.claims import batch_ranges, claim, release
from campaigns.sending.limits import limiter
from campaigns.sending.outcomes import Outcome, backoff, classify
from campaigns.sending.sweeper import complete_if_done, sweep
from campaigns.sending.worker import send_batch

__all__ = [
    "Outcome",
    "backoff",
    "batch_ranges",
    "claim",
    "classify",
    "complete_if_done",
    "limiter",
    "release",
    "send_batch",
    "sweep",
]
