"""HTML sanitising: an XSS corpus is neutralised, sanitising is stable, and text is derived well."""

from html.parser import HTMLParser

import pytest

from campaigns.sanitize import ATTRIBUTES, TAGS, html_to_text, links_in, sanitize_html

# After the OWASP XSS filter evasion cheat sheet, plus mail-specific tricks.
XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/xss.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<img src="https://x.example/a.png" onerror="alert(1)">',
    "<img src=x onerror=alert(1)>",
    '<IMG SRC="javascript:alert(1);">',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href=" &#14;  javascript:alert(1)">click</a>',
    '<a href="jav&#x09;ascript:alert(1)">click</a>',
    '<a href="jav\tascript:alert(1)">click</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="https://ok.example" onclick="alert(1)" onmouseover="alert(2)">x</a>',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<form action="https://evil.example"><input name="password"><button>Go</button></form>',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<div style="width: expression(alert(1));">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    '<math href="javascript:alert(1)">x</math>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<body onload="alert(1)">x</body>',
    '<details open ontoggle="alert(1)">x</details>',
    '<video><source onerror="alert(1)"></video>',
    '<input autofocus onfocus="alert(1)">',
    "<!--<img src=x onerror=alert(1)>-->",
    '<a href="https://ok.example" target="_blank" rel="opener">x</a>',
    '<p title="x" id="y" class="z">x</p>',
    '<img src="http://tracker.example/pixel.gif">',
    '<a href="/relative/path">relative</a>',
    '<a href="//evil.example/x">protocol-relative</a>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    "<template><script>alert(1)</script></template>",
]


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _elements(html: str) -> list[tuple[str, dict]]:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree.elements


def test_the_corpus_is_large_enough():
    assert len(XSS) >= 25


@pytest.mark.parametrize("payload", XSS)
def test_an_xss_payload_is_neutralised(payload):
    clean = sanitize_html(payload)
    for tag, attrs in _elements(clean):
        assert tag in TAGS, (payload, clean)
        allowed = ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        assert set(attrs) <= allowed, (payload, clean)
        if tag == "a":
            assert attrs["rel"] == "noopener noreferrer"
            href = (attrs.get("href") or "https://").lower()
            assert href.startswith(("https://", "http://", "mailto:", "tel:")), (payload, clean)
        if tag == "img" and "src" in attrs:
            assert attrs["src"].lower().startswith("https://"), (payload, clean)
    lowered = clean.lower()
    for marker in ("<script", "<svg", "<iframe", "<form", "<style", "<math", "<base", "<meta"):
        assert marker not in lowered, (payload, clean)
    for marker in ("<object", "<embed", "<input", "<link", " on", "style=", "javascript:"):
        assert marker not in lowered, (payload, clean)


@pytest.mark.parametrize("payload", XSS)
def test_sanitising_is_idempotent(payload):
    once = sanitize_html(payload)
    assert sanitize_html(once) == once


def test_safe_formatting_survives_and_links_get_rel():
    html = (
        '<h2>Sorry</h2><p>Dear <strong>Ann</strong>, <em>we</em> <a href="https://x.example/'
        'help" title="Help">read more</a>.</p><ul><li>one</li></ul>'
        '<img src="https://x.example/logo.png" alt="Logo" width="120" height="40">'
    )
    assert sanitize_html(html) == html.replace(
        'title="Help">', 'title="Help" rel="noopener noreferrer">'
    )


def test_a_placeholder_inside_an_https_link_is_kept():
    html = '<a href="https://x.example/verify?code={{ verification_code }}">Verify</a>'
    assert "{{ verification_code }}" in sanitize_html(html)


def test_plain_text_is_derived_with_paragraphs_and_links():
    html = (
        "<h1>We are sorry</h1><p>Dear Ann,<br>we made a mistake.</p>"
        '<p>Read <a href="https://x.example/faq">what happened</a> or write to '
        '<a href="mailto:care@x.example">care@x.example</a>.</p>'
        "<ul><li>We stopped the emails.</li><li>We checked the list.</li></ul>"
        "<p>Caf&eacute; &amp; co</p>"
    )
    assert html_to_text(html) == (
        "We are sorry\n\n"
        "Dear Ann,\nwe made a mistake.\n\n"
        "Read what happened (https://x.example/faq) or write to care@x.example.\n\n"
        "- We stopped the emails.\n- We checked the list.\n\n"
        "Café & co"
    )


def test_links_are_found_in_html_and_text():
    found = links_in(
        html='<a href="http://a.example">a</a><img src="https://b.example/i.png">',
        text="see http://c.example/x, or https://d.example.",
    )
    assert found == [
        "http://a.example",
        "https://b.example/i.png",
        "http://c.example/x",
        "https://d.example",
    ]
