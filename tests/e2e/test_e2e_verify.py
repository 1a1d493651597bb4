"""The public verification page in a real browser: on a phone, by keyboard, light and dark."""

from playwright.sync_api import expect

from tests.e2e.browser import axe_violations

PHONE = {"width": 375, "height": 667}


def test_a_customer_checks_a_code_on_a_phone_without_logging_in(
    browser, stack, console, axe_source, shot
):
    for scheme in ("light", "dark"):
        context = browser.new_context(
            base_url=stack.base_url, viewport=PHONE, color_scheme=scheme, locale="en-GB"
        )
        context.set_default_timeout(15_000)
        page = console.watch(context.new_page())
        page.goto("/verify/")
        expect(page.get_by_role("heading", level=1)).to_contain_text("really from")
        assert axe_violations(page, axe_source) == [], scheme

        # By keyboard alone: the label leads to the field, Enter submits.
        page.get_by_label("Verification code").focus()
        page.keyboard.type("zzzz-zzzz zz")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Not recognised")).to_be_visible()
        assert axe_violations(page, axe_source) == [], scheme
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        shot(page, f"verify-phone-{scheme}", full_page=True)
        context.close()
    # No CSP refusals, no failed requests (the stylesheet included).
    assert console.errors == [], console.errors
