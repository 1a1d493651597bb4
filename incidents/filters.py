"""Audience filters and segment rules: validated once, then turned into querysets.

Both arrive as JSON from the UI and the API, so every key and operator is
checked against an allow-list before it gets near the ORM.
"""

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from incidents.addresses import InvalidAddress, _ascii_domain
from incidents.models import SendLogEntry

# No "__": Django would read it as a lookup (metadata__x__regex) instead of a key.
_KEY = re.compile(r"^(?!.*__)[A-Za-z0-9_]{1,64}$")
STATUSES = (
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "rejected",
    "complained",
    "opened",
    "clicked",
    "failed",
    "unsubscribed",
)


def parse_scalar(value: Any) -> Any:
    """'true' → True, '3' → 3, 'abc' → 'abc': metadata values typed as the UI sends them."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, bool | int | float | str) or parsed is None else value


def _datetime(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = parse_datetime(str(value))
        if parsed is None:
            raise ValidationError({name: f"“{value}” is not an ISO 8601 date and time."})
    if parsed.tzinfo is None:
        raise ValidationError({name: "Give a time zone (for example 2026-11-28T09:00:00Z)."})
    return parsed


@dataclass(frozen=True)
class AudienceFilter:
    """What the mis-sent email looked like in the send log. Every condition must hold."""

    template: str = ""
    tags: tuple[str, ...] = ()
    sent_from: datetime | None = None
    sent_until: datetime | None = None
    domain: str = ""
    locale: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> "AudienceFilter":
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValidationError(f"Unknown filter(s): {', '.join(sorted(unknown))}.")
        tags = data.get("tags") or ()
        if isinstance(tags, str):
            tags = [t for t in re.split(r"[;,]", tags)]
        tags = tuple(sorted({t.strip().lower() for t in tags if t.strip()}))
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValidationError({"metadata": "Give metadata as key/value pairs."})
        for key in metadata:
            if not _KEY.match(key):
                raise ValidationError(
                    {
                        "metadata": f"“{key}” is not a metadata key (letters, digits and single _ only)."
                    }
                )
        domain = (data.get("domain") or "").strip().lstrip("@")
        if domain:
            try:
                domain = _ascii_domain(domain)
            except InvalidAddress as exc:
                raise ValidationError({"domain": str(exc)}) from exc
        status = (data.get("status") or "").strip().lower()
        if status and status not in STATUSES:
            raise ValidationError({"status": f"“{status}” is not a send log status."})
        result = cls(
            template=(data.get("template") or "").strip(),
            tags=tags,
            sent_from=_datetime(data.get("sent_from"), "sent_from"),
            sent_until=_datetime(data.get("sent_until"), "sent_until"),
            domain=domain,
            locale=(data.get("locale") or "").strip().lower(),
            metadata={k: parse_scalar(v) for k, v in metadata.items()},
            status=status,
        )
        if not (result.template or result.tags or result.sent_from or result.sent_until):
            raise ValidationError(
                "Describe the mis-sent email with at least a template, a tag or a sending window."
            )
        if result.sent_from and result.sent_until and result.sent_until < result.sent_from:
            raise ValidationError({"sent_until": "The window must end after it starts."})
        return result

    def as_json(self) -> dict:
        data = asdict(self)
        data["tags"] = list(self.tags)
        for name in ("sent_from", "sent_until"):
            data[name] = data[name].isoformat() if data[name] else None
        return {k: v for k, v in data.items() if v not in ("", None, [], {})}

    def queryset(self) -> QuerySet[SendLogEntry]:
        qs = SendLogEntry.objects.all()
        if self.template:
            qs = qs.filter(template=self.template)
        for tag in self.tags:
            qs = qs.filter(tags__contains=f";{tag};")
        if self.sent_from:
            qs = qs.filter(sent_at__gte=self.sent_from)
        if self.sent_until:
            qs = qs.filter(sent_at__lt=self.sent_until)
        if self.domain:
            qs = qs.filter(address__endswith=f"@{self.domain}")
        if self.locale:
            qs = qs.filter(locale=self.locale)
        for key, value in self.metadata.items():
            qs = qs.filter(**{f"metadata__{key}": value})
        if self.status:
            qs = qs.filter(status=self.status)
        return qs


# --- Segment rules ------------------------------------------------------------
RULE_FIELDS = ("locale", "domain", "latest_status", "message_count", "customer_id")
RULE_OPS = ("eq", "ne", "in", "gte", "lte", "exists")


def _rule_q(rule: dict) -> Q:
    if not isinstance(rule, dict):
        raise ValidationError("Each rule is an object with field, op and value.")
    name, op, value = rule.get("field", ""), rule.get("op", "eq"), rule.get("value")
    if op not in RULE_OPS:
        raise ValidationError(f"“{op}” is not a rule operator ({', '.join(RULE_OPS)}).")
    if name.startswith("metadata."):
        key = name.removeprefix("metadata.")
        if not _KEY.match(key):
            raise ValidationError(f"“{key}” is not a metadata key.")
        lookup = f"metadata__{key}"
    elif name == "domain":
        if op not in ("eq", "ne"):
            raise ValidationError("The domain rule takes eq or ne.")
        q = Q(address__endswith=f"@{str(value).lower().lstrip('@')}")
        return ~q if op == "ne" else q
    elif name in RULE_FIELDS:
        lookup = name
    else:
        raise ValidationError(f"“{name}” is not a field a segment rule can use.")
    if op == "exists":
        return Q(**{f"{lookup}__isnull": not parse_scalar(value)})
    if op == "in":
        values = value if isinstance(value, list) else str(value).split(",")
        return Q(**{f"{lookup}__in": [parse_scalar(v) for v in values]})
    if name == "message_count":
        value = int(value)
    value = parse_scalar(value)
    if op == "eq":
        return Q(**{lookup: value})
    if op == "ne":
        return ~Q(**{lookup: value})
    return Q(**{f"{lookup}__{op}": value})


def rules_q(rules: list[dict]) -> Q:
    """All conditions of a segment, AND-ed. Raises ValidationError naming the bad rule."""
    if not isinstance(rules, list):
        raise ValidationError("Rules are a list.")
    q = Q()
    for number, rule in enumerate(rules, start=1):
        try:
            q &= _rule_q(rule)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"Rule {number}: {exc}") from exc
        except ValidationError as exc:
            raise ValidationError(f"Rule {number}: {' '.join(exc.messages)}") from exc
    return q
