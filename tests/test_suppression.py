import pytest
from django.core.exceptions import ValidationError

from campaigns import services
from campaigns.models import Suppression
from incidents.actors import Actor
from incidents.models import AuditEntry


def test_an_address_is_suppressed_once_in_normalised_form(support_sam):
    by = Actor.for_user(support_sam)
    first, created = services.suppression_add(
        address=" Anna@Bücher.de ", reason="do_not_contact", source="manual", by=by
    )
    again, created_again = services.suppression_add(
        address="anna@xn--bcher-kva.de", reason="complaint", source="webhook", by=by
    )
    assert created and not created_again and again == first
    assert first.address == "anna@xn--bcher-kva.de" and first.reason == "do_not_contact"
    entry = AuditEntry.objects.get(action="suppression.added")
    assert "anna" not in str(entry.after) and entry.after["reason"] == "do_not_contact"


def test_a_bad_address_or_reason_is_refused(support_sam):
    by = Actor.for_user(support_sam)
    with pytest.raises(ValidationError, match="no local part"):
        services.suppression_add(address="nobody", reason="other", source="manual", by=by)
    with pytest.raises(ValidationError, match="not a suppression reason"):
        services.suppression_add(address="a@example.com", reason="bored", source="manual", by=by)
    assert not Suppression.objects.exists()


def test_lifting_a_suppression_needs_a_reason(support_sam):
    by = Actor.for_user(support_sam)
    suppression, _ = services.suppression_add(
        address="a@example.com", reason="hard_bounce", source="manual", by=by
    )
    with pytest.raises(ValidationError, match="Say why"):
        services.suppression_remove(suppression=suppression, reason="", by=by)
    services.suppression_remove(suppression=suppression, reason="Mailbox fixed", by=by)
    assert not Suppression.objects.exists()
    assert AuditEntry.objects.get(action="suppression.removed").after == {"why": "Mailbox fixed"}


def test_a_suppression_file_adds_good_rows_and_reports_bad_ones(support_sam):
    text = (
        "address,reason\na@example.com,complaint\nbroken,\nA@EXAMPLE.com,\nb@example.com,nonsense\n"
    )
    result = services.suppression_import(
        text=text, default_reason="do_not_contact", by=Actor.for_user(support_sam)
    )
    assert result["added"] == 1
    assert [p["line"] for p in result["problems"]] == [3, 5]
    assert Suppression.objects.get().reason == "complaint"
