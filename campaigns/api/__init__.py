"""The campaigns side of the JSON API; config/api_urls.py maps URLs to these modules.

- `suppressions.py`: the suppression list.
- `messages.py`: each segment's apology and its versions (list, first version, next version).
- `versions.py`: one version: read, diff, preview, test send, request approval, approve, reject.
- `campaigns.py`: sending: launch, follow, pause, resume, cancel and top up campaigns;
  a campaign's deliveries; decide on an uncertain delivery.
- `common.py`: what the messages modules share (permissions, access, output serializers).

Same conventions as incidents/api/: thin views, nested serializers, one service or
selector each, `permission_classes = [HasPerms]` with `read_perm`/`write_perm`.
"""
