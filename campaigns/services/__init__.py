"""Campaign-side workflows. Each runs in one transaction and writes its audit entry.

Import from here: `from campaigns import services; services.version_create(...)`.
Reads (diffs, warnings, approval state) are in campaigns.selectors; rendering and
the sandbox in campaigns.rendering. See docs/messages.md.
"""

# The sending path asks these before anything goes out; they are reads, kept in
# selectors, and named here too because "is it approved?" is part of the workflow.
from campaigns.selectors import version_approval_state, version_is_approved
from campaigns.services.approvals import approval_request, version_approve, version_reject
from campaigns.services.messages import (
    Draft,
    draft_clean,
    version_create,
    version_test_send,
)
from campaigns.services.sending import (
    campaign_auto_pause,
    campaign_cancel,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_top_up,
    delivery_resolve_uncertain,
)
from campaigns.services.suppressions import (
    MAX_SUPPRESSION_ROWS,
    suppression_add,
    suppression_import,
    suppression_remove,
)

__all__ = [
    "MAX_SUPPRESSION_ROWS",
    "Draft",
    "approval_request",
    "draft_clean",
    "suppression_add",
    "suppression_import",
    "suppression_remove",
    "version_approval_state",
    "version_approve",
    "version_create",
    "version_is_approved",
    "version_reject",
    "version_test_send",
    # Sending (campaigns/services/sending.py)
    "campaign_auto_pause",
    "campaign_cancel",
    "campaign_launch",
    "campaign_pause",
    "campaign_resume",
    "campaign_top_up",
    "delivery_resolve_uncertain",
]
