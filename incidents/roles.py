"""The four roles and the explicit permissions each one holds.

Groups are synced from this table after every migrate, so the code is the one
place that says who may do what. Later capabilities add their permissions here.
"""

from django.apps import apps as global_apps

SUPPORT, COMMS, AUDITOR, ADMIN = "Support", "Comms", "Auditor", "Admin"
ROLE_NAMES = (SUPPORT, COMMS, AUDITOR, ADMIN)

_READ = [
    "incidents.view_incident",
    "incidents.view_sendlogentry",
    "incidents.view_sendlogimport",
    "incidents.view_audiencequery",
    "incidents.view_affectedperson",
    "incidents.view_segment",
    "campaigns.view_suppression",
    "campaigns.view_message",
    "campaigns.view_messageversion",
    "campaigns.view_approval",
    "campaigns.view_testsend",
    "campaigns.view_campaign",
    "campaigns.view_delivery",
    "campaigns.view_deliveryevent",
    "campaigns.view_sendclaim",
    "incidents.view_contactrecord",
]
# Finding and shaping the audience: import the send log, freeze, segment, trim the list.
_AUDIENCE = [
    "incidents.import_sendlog",
    "incidents.add_audiencequery",
    "incidents.change_affectedperson",
    "incidents.add_segment",
    "incidents.change_segment",
    "incidents.delete_segment",
    "campaigns.add_suppression",
]

# Writing apologies: every save is a new version; test sends go to the seed list only.
_DRAFT = ["campaigns.add_messageversion", "campaigns.test_send_messageversion"]
# Deciding on a version (four eyes: never by anyone who wrote part of the message).
_DECIDE = ["campaigns.approve_messageversion"]
# Following up: record how a person was reached (phone, letter, ticket), assign follow-ups.
_FOLLOW_UP = ["incidents.record_contact"]
# Deciding that a person need not be contacted (with a reason): comms and admin only.
_WAIVE = ["incidents.waive_contact"]
# Evidence packs: pseudonymised for auditors and admins; with addresses (and a
# stated reason) for admins only.
_EXPORT = ["incidents.export_evidence", "incidents.view_evidenceexport"]
_EXPORT_PII = ["incidents.export_pii"]
# Sending: launch, top up, send again, pause/resume/cancel, decide on uncertain deliveries.
_SEND = [
    "campaigns.launch_campaign",
    "campaigns.control_campaign",
    "campaigns.resolve_delivery",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    SUPPORT: [
        *_READ,
        "incidents.add_incident",
        "incidents.change_incident",
        "incidents.transition_incident",
        "incidents.add_note",
        *_AUDIENCE,
        *_DRAFT,
        *_SEND,
        *_FOLLOW_UP,
    ],
    COMMS: [*_READ, "incidents.transition_incident", "incidents.add_note", *_DECIDE, *_WAIVE],
    AUDITOR: [*_READ, "incidents.view_auditentry", "incidents.verify_audit", *_EXPORT],
    ADMIN: [
        *_READ,
        "incidents.add_incident",
        "incidents.change_incident",
        "incidents.transition_incident",
        "incidents.add_note",
        "incidents.view_auditentry",
        "incidents.verify_audit",
        "incidents.view_timelineentry",
        "incidents.view_referencecounter",
        "incidents.view_contactsnapshot",
        "incidents.view_ledgercache",
        "incidents.view_ledgermark",
        # The operator metrics at /metrics (Prometheus itself uses METRICS_TOKEN).
        "incidents.view_metrics",
        *_AUDIENCE,
        "campaigns.delete_suppression",
        *_DRAFT,
        *_DECIDE,
        *_SEND,
        *_FOLLOW_UP,
        *_WAIVE,
        *_EXPORT,
        *_EXPORT_PII,
        "campaigns.view_outboxmessage",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.view_group",
        "authtoken.view_tokenproxy",
        "authtoken.add_tokenproxy",
        "authtoken.delete_tokenproxy",
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
        "axes.view_accesslog",
    ],
}


def sync_roles(*, apps=global_apps, using: str = "default") -> None:
    """Create the role groups and give each exactly the permissions in the table.

    It runs after `migrate` and after each flush of a test database (every test
    that commits), so one query reads every permission the table names: a query
    a permission cost 5 s a flush. A permission that does not exist is left out.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    named = [perm.split(".") for perms in ROLE_PERMISSIONS.values() for perm in perms]
    found: dict[str, list[int]] = {}
    rows = (
        Permission.objects.using(using)
        .filter(
            content_type__app_label__in={app_label for app_label, _ in named},
            codename__in={codename for _, codename in named},
        )
        .values_list("content_type__app_label", "codename", "pk")
    )
    for app_label, codename, pk in rows:
        found.setdefault(f"{app_label}.{codename}", []).append(pk)
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.set([pk for perm in perms for pk in found.get(perm, [])])


def role_of(user) -> str | None:
    if not user.is_authenticated:
        return None
    names = set(user.groups.values_list("name", flat=True))
    return next((role for role in (ADMIN, COMMS, SUPPORT, AUDITOR) if role in names), None)
