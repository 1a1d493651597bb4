"""The one door for ESP tracking events (docs/tracking.md).

- `ingest`: webhook requests store their events, raw and normalised, in one
  INSERT that skips duplicates, and queue the apply job. Nothing else happens
  on the request path.
- `apply`: the job maps events to deliveries and applies them by the `rules`
  (never regressing), updates contact statuses (`contact`), the suppression
  list and, for mail that is not ours, the company's send log.
- `sandbox`: the embedded mode's simulated ESP, through the same two steps.
"""

from campaigns.tracking.ingest import collecting, events_ingest, events_store, on_tracking

__all__ = ["collecting", "events_ingest", "events_store", "on_tracking"]
