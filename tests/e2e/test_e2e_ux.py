"""Beyond the story: wrong roles, the keyboard alone, 200% zoom and dark mode.

These run after tests/e2e/test_e2e_story.py on the same stack and look at the
incident the story opened.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import VIEWPORT, axe_violations, focus_is_visible, tab_to
from tests.e2e.state import story


def _key_pages() -> list[str]:
    if not story.reference:
        pytest.skip("the story did not get as far as opening its incident")
    ref = story.reference
    return [
        "/",
        f"/incidents/{ref}/",
        f"/incidents/{ref}/audience/",
        f"/incidents/{ref}/audience/segments/",
        f"/incidents/{ref}/audience/people/",
        f"/incidents/{ref}/messages/",
        f"/incidents/{ref}/sending/",
    ]


def test_a_wrong_role_is_refused_in_the_browser(as_user):
    ref = story.reference or "INC-2026-0001"

    comms = as_user("comms_cleo")
    expect(comms.get_by_role("link", name="Open incident")).to_have_count(0)
    answer = comms.goto("/incidents/new/")
    assert answer.status == 403
    expect(comms.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(comms.locator("main")).to_contain_text("Your role (Comms) does not allow this")

    auditor = as_user("auditor_abe")
    assert auditor.goto("/incidents/new/").status == 403
    if story.reference:
        auditor.goto(f"/incidents/{ref}/audience/segments/")
        expect(auditor.get_by_role("button", name="Create segment")).to_have_count(0)
        auditor.goto(f"/incidents/{ref}/sending/")
        expect(auditor.get_by_role("link", name=re.compile("^Launch"))).to_have_count(0)

        support = as_user("support_sam")
        support.goto(f"/incidents/{ref}/messages/")
        version = support.locator("a[href*='/versions/']").first.get_attribute("href")
        support.goto(f"{version}approve/")
        # Refused outright (403) or told why on the page: never offered the button.
        expect(support.locator("main")).to_contain_text(
            re.compile("Your role \\(Support\\) does not allow this|You cannot approve")
        )
        expect(support.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)


def test_the_main_forms_work_with_the_keyboard_alone(browser, stack):
    context = browser.new_context(base_url=stack.base_url, viewport=VIEWPORT)
    page = context.new_page()
    keys = page.keyboard
    page.goto("/login/")

    tab_to(page, page.get_by_label("Username"))
    keys.type("support_sam")
    tab_to(page, page.get_by_label("Password"))
    keys.type(stack.seed["password"])
    keys.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Incidents")

    # Open an incident: Enter on the link, then type into each field in turn.
    tab_to(page, page.get_by_role("link", name="Open incident").first)
    keys.press("Enter")
    tab_to(page, page.get_by_label("Title"))
    keys.type("Order confirmation sent twice (keyboard)")
    tab_to(page, page.get_by_label("What went wrong"))
    keys.type("Typed without a mouse.")
    tab_to(page, page.get_by_label("Severity"))
    keys.type("SEV3")
    tab_to(page, page.get_by_label("Template or campaign"))
    keys.type("registry-gift-purchased")
    tab_to(page, page.get_by_role("button", name="Open incident"))
    keys.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Order confirmation sent twice (keyboard)"
    )

    # A status change with its note, then a note on the timeline.
    tab_to(page, page.locator("#status").get_by_label("Note"))
    keys.type("Looking into it.")
    tab_to(page, page.get_by_role("button", name="Move to Investigating"))
    keys.press("Enter")
    expect(page.locator(".badge").first).to_have_text(re.compile("Investigating"))
    tab_to(page, page.get_by_label("Add a note"))
    keys.type("Checked the send log by keyboard.")
    tab_to(page, page.get_by_role("button", name="Add note"))
    keys.press("Space")
    expect(page.locator("#timeline")).to_contain_text("Checked the send log by keyboard.")

    # The audience: preview, tick the confirmation, freeze.
    tab_to(page, page.get_by_role("link", name="Audience", exact=True))
    keys.press("Enter")
    tab_to(page, page.get_by_role("button", name="Preview"))
    keys.press("Enter")
    expect(page.locator("#preview")).to_contain_text("distinct people")
    freeze = page.locator("form.freeze")
    tab_to(page, freeze.get_by_role("checkbox"))
    keys.press("Space")
    tab_to(page, freeze.get_by_role("button", name=re.compile("^Freeze")))
    keys.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("added to the affected list")

    # A segment: a select is chosen by typing the start of an option.
    tab_to(page, page.get_by_role("link", name="Segments", exact=True))
    keys.press("Enter")
    tab_to(page, page.get_by_label("Name", exact=True))
    keys.type("German (keyboard)")
    tab_to(page, page.get_by_label("Rule 1: field"))
    keys.type("Loc")
    tab_to(page, page.get_by_label("Rule 1: value"))
    keys.type("de")
    keys.press("Enter")
    expect(page.get_by_role("table")).to_contain_text("German (keyboard)")
    context.close()


def test_key_pages_are_readable_at_200_percent_zoom(as_user, shot):
    pages = _key_pages()
    # 200% zoom of a 1280×800 window leaves 640×400 CSS pixels.
    page = as_user("support_sam", viewport={"width": 640, "height": 400})
    for path in pages:
        page.goto(path)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 200% zoom"
    page.goto(pages[1])
    shot(page, "zoom-200-incident")


def test_key_pages_pass_the_accessibility_check_in_dark_mode(as_user, axe_source, shot):
    pages = _key_pages()
    page = as_user("support_sam", color_scheme="dark")
    for path in pages:
        page.goto(path)
        problems = axe_violations(page, axe_source)
        assert problems == [], f"accessibility problems in dark mode on {path}: {problems}"
    page.goto(pages[1])
    shot(page, "dark-incident")


def test_focus_is_always_visible_on_the_incident_page(as_user):
    pages = _key_pages()
    page = as_user("support_sam")
    page.goto(pages[1])
    seen = 0
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement === document.body"):
            break
        assert focus_is_visible(page), page.evaluate("() => document.activeElement.outerHTML")
        seen += 1
    assert seen >= 10
