"""Helpers for the browser side of the end-to-end tests."""

# The screenshots' size: a common laptop window.
VIEWPORT = {"width": 1280, "height": 800}


class Console:
    """Browser console errors and CSP refusals, which a test can assert are absent."""

    def __init__(self):
        self.errors: list[str] = []

    def watch(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Which resource failed: the console only says "Failed to load resource".
        page.on(
            "response",
            lambda r: (
                r.status >= 400 and self.errors.append(f"{r.status} {r.request.method} {r.url}")
            ),
        )
        return page

    def clear(self):
        self.errors.clear()


def login(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def axe_violations(page, source: str, *, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core (WCAG 2.1 A and AA rules) on the page; the violations of these impacts."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP does not apply.
        page.evaluate(source)
    result = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
            resultTypes: ['violations'],
        })"""
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in impacts
    ]


def focus_is_visible(page) -> bool:
    """Whether the focused element shows a focus indicator (an outline or a box shadow)."""
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            if (!el || el === document.body) return false;
            const style = getComputedStyle(el);
            return (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
                || style.boxShadow !== 'none';
        }"""
    )


def tab_to(page, locator, *, limit: int = 80) -> None:
    """Press Tab until `locator` has the focus, checking the focus is visible on the way."""
    target = locator.element_handle()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("el => el === document.activeElement", target):
            assert focus_is_visible(page), "the focused element shows no focus indicator"
            return
    raise AssertionError(f"{limit} presses of Tab never reached {locator}")
