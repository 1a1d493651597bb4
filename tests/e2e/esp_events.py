"""Postmark's tracking webhooks, as Postmark posts them, for the messages the stub took.

The JSON follows Postmark's documented Delivery and Bounce webhooks
(https://postmarkapp.com/developer/webhooks/delivery-webhook,
https://postmarkapp.com/developer/webhooks/bounce-webhook): one event per POST,
with the message's MessageID and the Metadata it was sent with, to
/webhooks/postmark/tracking/ with the WEBHOOK_SECRET as HTTP basic auth.
"""

import base64
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.e2e.stack import WEBHOOK_PASSWORD, WEBHOOK_USER


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def delivery(message: dict) -> dict:
    payload = message["payload"]
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message["message_id"],
        "Recipient": message["to"],
        "Tag": payload.get("Tag", ""),
        "DeliveredAt": _now(),
        "Details": "Test delivery webhook details",
        "Metadata": payload.get("Metadata") or {},
    }


def hard_bounce(message: dict) -> dict:
    payload = message["payload"]
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": payload.get("Tag", ""),
        "MessageID": message["message_id"],
        "Metadata": payload.get("Metadata") or {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": message["to"],
        "From": "care@retailer.example",
        "BouncedAt": _now(),
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": True,
        "Subject": payload.get("Subject", ""),
    }


def post(base_url: str, events: list[dict], *, threads: int = 8) -> list[int]:
    """POST each event as Postmark would; the HTTP status of each."""
    url = f"{base_url}/webhooks/postmark/tracking/"
    token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()

    def one(event: dict) -> int:
        request = urllib.request.Request(
            url,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, events))
