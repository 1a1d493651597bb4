"""The campaigns app's models, one module per area; import them from here."""

from campaigns.models.events import DeliveryEvent, EventOutcome
from campaigns.models.messages import (
    Approval,
    Immutable,
    Message,
    MessageVersion,
    OutboxMessage,
    TestSend,
    _AppendOnly,
    _AppendOnlyQuerySet,
)
from campaigns.models.sending import (
    ACCEPTED,
    CAMPAIGN_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    PENDING,
    Campaign,
    Delivery,
    IllegalTransition,
    SendClaim,
    new_verification_code,
)
from campaigns.models.suppression import Suppression

__all__ = [
    "ACCEPTED",
    "CAMPAIGN_TRANSITIONS",
    "DELIVERY_TRANSITIONS",
    "PENDING",
    "Approval",
    "Campaign",
    "Delivery",
    "DeliveryEvent",
    "EventOutcome",
    "IllegalTransition",
    "Immutable",
    "Message",
    "MessageVersion",
    "OutboxMessage",
    "SendClaim",
    "Suppression",
    "TestSend",
    "_AppendOnly",
    "_AppendOnlyQuerySet",
    "new_verification_code",
]
