"""Who may do what, URL by URL: the committed decision for every route.

Each URL name maps HTTP methods to the status each role gets. A new URL that
is not listed here fails tests/test_permission_matrix.py, so every route gets
an explicit access decision. Roles: anon (not logged in), support, comms,
auditor, admin. 302 for anon on a page means "sent to the login page".
"""

ROLES = ("anon", "support", "comms", "auditor", "admin")


def row(anon, support, comms, auditor, admin):
    return dict(zip(ROLES, (anon, support, comms, auditor, admin), strict=True))


# Everyone logged in may read; only the named roles may write.
READ_ALL = row(302, 200, 200, 200, 200)
API_READ_ALL = row(401, 200, 200, 200, 200)

MATRIX: dict[str, dict[str, dict[str, int]]] = {
    # --- Staff UI -----------------------------------------------------------
    "incidents:list": {"GET": READ_ALL},
    "incidents:create": {"GET": row(302, 200, 403, 403, 200), "POST": row(302, 200, 403, 403, 200)},
    "incidents:detail": {"GET": READ_ALL},
    "incidents:edit": {"GET": row(302, 200, 403, 403, 200), "POST": row(302, 200, 403, 403, 200)},
    "incidents:transition": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 302, 403, 302),
    },
    "incidents:add-note": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 302, 403, 302),
    },
    # --- Audience UI ----------------------------------------------------------
    # Empty posts: a form with errors (200), or a redirect back with a message (302).
    "incidents:regulator-notification": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "incidents:audience": {"GET": READ_ALL},
    "incidents:audience-freeze": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "incidents:segments": {"GET": READ_ALL},
    "incidents:segment-create": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    "incidents:segment-edit": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    # A post without the confirmation page's field goes to that page.
    "incidents:segment-delete": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 302, 403, 403, 302),
    },
    "incidents:people": {"GET": READ_ALL},
    "incidents:people-add": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    "incidents:person-remove": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    "incidents:sendlog-imports": {"GET": READ_ALL},
    "incidents:sendlog-import-start": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    "incidents:sendlog-import": {"GET": READ_ALL},
    # The report quotes the file's rows: importers only. (404: the fixture import has none.)
    "incidents:sendlog-import-errors": {"GET": row(302, 404, 403, 403, 404)},
    "campaigns:suppressions": {"GET": READ_ALL},
    "campaigns:suppression-add": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    "campaigns:suppression-import": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    "campaigns:suppression-lift": {
        "GET": row(302, 403, 403, 403, 200),
        "POST": row(302, 403, 403, 403, 200),
    },
    # --- Messages UI ----------------------------------------------------------
    # The fixture: version 1 of the default segment's message, by support_sam, SEV2
    # (the same one the Messages API entries use). Empty posts: a form with errors
    # (200), or a redirect back with a message (302). Support drafts, tests and asks
    # for approval; Comms decides; everyone reads; the sandbox outbox is the Admin's.
    "campaigns:messages": {"GET": READ_ALL},
    "campaigns:message": {"GET": READ_ALL},
    "campaigns:message-edit": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    "campaigns:message-diff": {"GET": READ_ALL},
    "campaigns:version": {"GET": READ_ALL},
    "campaigns:version-preview": {"GET": READ_ALL},
    "campaigns:version-test-send": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    # Support asks (Comms is emailed); the Admin's second ask within minutes sends nothing.
    "campaigns:version-request-approval": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    # GET is the confirmation page; a post without its confirmation goes to that page.
    "campaigns:version-approve": {
        "GET": row(302, 403, 200, 403, 200),
        "POST": row(302, 403, 302, 403, 302),
    },
    "campaigns:version-reject": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 403, 200, 403, 200),
    },
    "campaigns:outbox": {"GET": row(302, 403, 403, 403, 200)},
    "campaigns:outbox-message": {"GET": row(302, 403, 403, 403, 200)},
    # --- Sending UI -----------------------------------------------------------
    # The fixture: a running campaign of the Messages API's version 1 (not approved)
    # with one uncertain delivery. Support and Admin launch, control and decide;
    # everyone watches. Empty posts: a page with the refusal or the form's errors
    # (200), or a redirect back with a message (302): pause pauses, then "already
    # paused"; resume and top-up are refused; cancel without its confirmation goes
    # to the confirmation page.
    "campaigns:sending": {"GET": READ_ALL},
    "campaigns:campaign-launch": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 200, 403, 403, 200),
    },
    "campaigns:campaign": {"GET": READ_ALL},
    "campaigns:campaign-progress": {"GET": READ_ALL},
    "campaigns:campaign-pause": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "campaigns:campaign-resume": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "campaigns:campaign-cancel": {
        "GET": row(302, 200, 403, 403, 200),
        "POST": row(302, 302, 403, 403, 302),
    },
    "campaigns:campaign-top-up": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "campaigns:campaign-uncertain": {"GET": READ_ALL},
    "campaigns:campaign-deliveries": {"GET": READ_ALL},
    "campaigns:delivery-resolve": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    # --- JSON API -----------------------------------------------------------
    "api-token": {"GET": row(405, 405, 405, 405, 405), "POST": row(400, 400, 400, 400, 400)},
    "api-incident-list": {"GET": API_READ_ALL, "POST": row(401, 400, 403, 403, 400)},
    "api-incident-detail": {"GET": API_READ_ALL, "PATCH": row(401, 200, 403, 403, 200)},
    "api-incident-transition": {"POST": row(401, 400, 400, 403, 400)},
    "api-incident-timeline": {"GET": API_READ_ALL, "POST": row(401, 400, 400, 403, 400)},
    # --- Audience API ---------------------------------------------------------
    # Writes are sent empty: 400 from validation, or 415 where only JSON is taken
    # (the test client posts an empty form).
    "api-sendlog-list": {"GET": API_READ_ALL},
    "api-sendlog-batch": {"POST": row(401, 415, 403, 403, 415)},
    "api-sendlog-import-list": {"GET": API_READ_ALL, "POST": row(401, 400, 403, 403, 400)},
    "api-sendlog-import-detail": {"GET": API_READ_ALL},
    # The report quotes the file's lines: importers only. (404: the fixture import has none.)
    "api-sendlog-import-error-report": {"GET": row(401, 404, 403, 403, 404)},
    "api-audience": {"GET": API_READ_ALL},
    # A POST only because the filters are a body; it changes nothing, so every role
    # that may read the send log may preview.
    "api-audience-preview": {
        "GET": row(401, 405, 405, 405, 405),
        "POST": row(401, 415, 415, 415, 415),
    },
    "api-audience-freeze": {"POST": row(401, 415, 403, 403, 415)},
    "api-audience-queries": {"GET": API_READ_ALL},
    "api-affected-list": {"GET": API_READ_ALL},
    "api-affected-import": {"POST": row(401, 400, 403, 403, 400)},
    "api-affected-remove": {"POST": row(401, 400, 403, 403, 400)},
    "api-segment-list": {"GET": API_READ_ALL, "POST": row(401, 415, 403, 403, 415)},
    # The fixture's segment is the default one: it can be renamed, never deleted (400).
    "api-segment-detail": {
        "GET": API_READ_ALL,
        "PATCH": row(401, 200, 403, 403, 200),
        "DELETE": row(401, 400, 403, 403, 400),
    },
    "api-suppression-list": {"GET": API_READ_ALL, "POST": row(401, 400, 403, 403, 400)},
    "api-suppression-import": {"POST": row(401, 400, 403, 403, 400)},
    # Lifting a suppression is the Admin's alone (and needs a reason: 400 when empty).
    "api-suppression-detail": {"GET": API_READ_ALL, "DELETE": row(401, 403, 403, 403, 400)},
    # --- Messages API -----------------------------------------------------------
    # The fixture: version 1 of the default segment's message, by support_sam, SEV2.
    # Drafting takes JSON only (415 for the empty form); Comms decides, never Support.
    "api-message-list": {"GET": API_READ_ALL, "POST": row(401, 415, 403, 403, 415)},
    "api-message-versions": {"GET": API_READ_ALL, "POST": row(401, 415, 403, 403, 415)},
    "api-version-detail": {"GET": API_READ_ALL},
    "api-version-diff": {"GET": API_READ_ALL},
    # A GET with query parameters: it changes nothing, so every reader may preview.
    "api-version-preview": {"GET": API_READ_ALL},
    "api-version-test-send": {"POST": row(401, 400, 403, 403, 400)},
    # Comms is asked (200 for each asker); the empty reject lacks its comment (400).
    "api-version-request-approval": {"POST": row(401, 200, 403, 403, 200)},
    "api-version-approve": {"POST": row(401, 403, 200, 403, 200)},
    "api-version-reject": {"POST": row(401, 403, 400, 403, 400)},
    # --- Sending API ------------------------------------------------------------
    # The fixture: a running campaign of the Messages API's version 1 (not approved),
    # with one uncertain delivery. Support and Admin launch, control and decide; everyone
    # reads. Empty posts: launch takes JSON only (415); pause pauses (200), then the
    # Admin's is refused as already paused (409); resume of a running campaign and the
    # top-up of an unapproved version are refused (409); cancel cancels, then 409; a
    # decision without `decision` is a 400.
    "api-campaign-list": {"GET": API_READ_ALL, "POST": row(401, 415, 403, 403, 415)},
    "api-campaign-detail": {"GET": API_READ_ALL},
    "api-campaign-pause": {"POST": row(401, 200, 403, 403, 409)},
    "api-campaign-resume": {"POST": row(401, 409, 403, 403, 409)},
    "api-campaign-cancel": {"POST": row(401, 200, 403, 403, 409)},
    "api-campaign-top-up": {"POST": row(401, 409, 403, 403, 409)},
    "api-campaign-deliveries": {"GET": API_READ_ALL},
    "api-delivery-resolve": {"POST": row(401, 400, 403, 403, 400)},
    # --- Contact: dashboard, follow-up, reconciliation (issue 6, the human side) ----
    # The fixture: one pending person in the default segment, no deliveries. Everyone
    # reads (auditors too); Support (record_contact) records, marks unreachable and
    # assigns; Comms (waive_contact) waives; the Admin does both. Empty UI posts: a form
    # with errors (200) or a redirect back with a message (302): "unreachable" marks the
    # person (Support), then "already unreachable" (Admin). Empty API posts: 415 (JSON
    # only) once the role may write.
    "incidents:dashboard": {"GET": READ_ALL},
    "incidents:dashboard-live": {"GET": READ_ALL},
    "incidents:unconfirmed": {"GET": READ_ALL},
    "incidents:unconfirmed-csv": {"GET": READ_ALL},
    "incidents:followup": {"GET": READ_ALL},
    "incidents:followup-bulk": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 302, 403, 302),
    },
    "incidents:contact-person": {"GET": READ_ALL},
    "incidents:contact-record": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 200, 403, 403, 200),
    },
    "incidents:contact-unreachable": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "incidents:contact-waive": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 403, 200, 403, 200),
    },
    "incidents:contact-assign": {
        "GET": row(302, 405, 405, 405, 405),
        "POST": row(302, 302, 403, 403, 302),
    },
    "api-dashboard": {"GET": API_READ_ALL},
    "api-completion": {"GET": API_READ_ALL},
    "api-unconfirmed": {"GET": API_READ_ALL},
    "api-contact-people": {"GET": API_READ_ALL},
    "api-contact-person": {"GET": API_READ_ALL},
    "api-contact-record": {"POST": row(401, 415, 403, 403, 415)},
    "api-contact-unreachable": {"POST": row(401, 415, 403, 403, 415)},
    "api-contact-waive": {"POST": row(401, 403, 415, 403, 415)},
    "api-contact-assign": {"POST": row(401, 415, 403, 403, 415)},
    "api-contact-bulk": {"POST": row(401, 415, 403, 403, 415)},
    "api-contact-bulk-waive": {"POST": row(401, 403, 415, 403, 415)},
    "api-schema": {"GET": API_READ_ALL},
    "api-docs": {"GET": row(302, 200, 200, 200, 200)},
    "api-not-found": {"GET": row(404, 404, 404, 404, 404)},
    # --- Evidence packs (incidents/views_export.py, incidents/api/export.py) ------
    # Auditors and admins export (pseudonymised); Support and Comms do not. The
    # fixture: a pseudonymised pack whose build failed, so its download is a 404 on
    # the page and a 409 (not_ready) in the API. Empty posts: the form's errors (200),
    # or the API's missing format (400). A pack with addresses needs export_pii
    # (tests/test_export_views.py).
    "incidents:evidence": {
        "GET": row(302, 403, 403, 200, 200),
        "POST": row(302, 403, 403, 200, 200),
    },
    "incidents:evidence-export": {"GET": row(302, 403, 403, 200, 200)},
    "incidents:evidence-download": {"GET": row(302, 403, 403, 404, 404)},
    "api-export-list": {"GET": row(401, 403, 403, 200, 200), "POST": row(401, 403, 403, 400, 400)},
    "api-export-detail": {"GET": row(401, 403, 403, 200, 200)},
    "api-export-download": {"GET": row(401, 403, 403, 409, 409)},
    # --- Accounts and operations -------------------------------------------
    "login": {"GET": row(200, 302, 302, 302, 302)},
    "logout": {"GET": row(302, 405, 405, 405, 405), "POST": row(302, 302, 302, 302, 302)},
    "healthz": {"GET": row(200, 200, 200, 200, 200)},
    # --- Verification page and metrics (issue 6, items 7 and 8) -------------------
    # Customers check an apology's code without an account; an empty post is the form
    # with its error (200) and changes nothing (tests/test_verify.py).
    "verify": {"GET": row(200, 200, 200, 200, 200), "POST": row(200, 200, 200, 200, 200)},
    # Prometheus sends METRICS_TOKEN as a bearer token; of the roles only the Admin
    # (incidents.view_metrics). No credentials: 401; a role without it: 403.
    "metrics": {"GET": row(401, 403, 403, 403, 200)},
    # --- Back office: the Admin role only ------------------------------------
    "admin:index": {"GET": row(302, 302, 302, 302, 200)},
    "admin:incidents_incident_changelist": {"GET": row(302, 302, 302, 302, 200)},
    "admin:incidents_auditentry_changelist": {"GET": row(302, 302, 302, 302, 200)},
    "admin:auth_user_changelist": {"GET": row(302, 302, 302, 302, 200)},
}

# The rest of Django's admin: one decision for all of it, checked above on
# representative pages. Every admin view requires an active staff user, and
# only the Admin role is staff.
PREFIX_DECISIONS = {
    "admin:": "Admin role only (is_staff), per-model permissions inside",
    # Public URLs for ESPs: each needs the WEBHOOK_SECRET basic auth (and the ESP's
    # signature where it signs); tests/test_webhooks_sendlog.py checks every one.
    "webhooks:": "ESPs only: WEBHOOK_SECRET basic auth, refused when no secret is set",
}
