"""The JSON API, one module per area; config/api_urls.py maps URLs to them.

- `incidents.py`: the token, incidents and their timeline, the schema and docs, the 404.
- `sendlog.py`: filling and reading the send log (batches, file imports).
- `audience.py`: one incident's audience: preview, freeze, the affected list, segments.
- `campaigns/api/`: the suppression list, and the apologies (messages, versions, approval).

Each view is thin (HackSoft style): parse input with a nested serializer, call
one service or selector, render with an output serializer. Each names
`permission_classes = [HasPerms]` and its `read_perm`/`write_perm` from
incidents/roles.py. The base view, error format and page-number pagination are
in incidents/api_common.py; `helpers.py` holds what several modules here share.
"""
