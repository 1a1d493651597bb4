"""Evidence packs: a verifiable export of one incident for auditors and regulators.

- `csvsafe.py`: cells a spreadsheet will not run as formulas (OWASP).
- `files.py`: CSV / JSON Lines writers that hash what they write.
- `ledger.py`: the contact ledger, one row per affected person, streamed
  (PostgreSQL: COPY … TO STDOUT in chunks; elsewhere: chunked queries).
- `sections.py`: the timeline, approvals, approved content and audience queries.
- `report.py`: the printable summary (HTML and PDF).
- `pack.py`: writes a pack into a directory with its manifest; `verify.py` checks one.
- `services.py` / `jobs.py`: requesting, building, downloading and expiring packs.
- `retention.py`: removing personal data from long-resolved incidents.

docs/evidence.md describes a pack for its readers.
"""
