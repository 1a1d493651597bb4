"""HTML for apologies: an explicit allow-list (nh3), a plain-text version, and the links in it.

`sanitize_html` runs when a version is saved (what is stored and approved is the
clean HTML) and again on every render (a placeholder value can never add markup,
but the second pass makes that true whatever the template does).

Allowed: simple text formatting, lists, headings, tables, links (http, https,
mailto, tel; always rel="noopener noreferrer") and images from https URLs.
Everything else is removed: scripts and styles with their content, event
handlers, style attributes, iframes, forms, SVG, MathML, <base>, <meta>, relative
and javascript:/data: URLs. The result is stable: sanitising it again changes nothing.
"""

import re
from html.parser import HTMLParser

import nh3

TAGS = frozenset(
    {
        "p",
        "br",
        "a",
        "strong",
        "em",
        "b",
        "i",
        "u",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "blockquote",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "hr",
        "span",
        "div",
        "img",
    }
)
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
}
URL_SCHEMES = frozenset({"https", "http", "mailto", "tel"})
# Removed together with everything inside them, not just the tags.
DROP_WITH_CONTENT = frozenset({"script", "style"})

_SIZE = re.compile(r"^\d{1,4}%?$")


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        # Images load when the mail is opened: only over https, never data: or http.
        return value if value.strip().lower().startswith("https://") else None
    if attribute in {"width", "height"}:
        return value if _SIZE.match(value.strip()) else None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(TAGS),
    clean_content_tags=set(DROP_WITH_CONTENT),
    # "*": no attribute is allowed on every tag (ammonia's default allows lang and title).
    attributes={"*": set()} | {tag: set(names) for tag, names in ATTRIBUTES.items()},
    attribute_filter=_attribute_filter,
    strip_comments=True,
    link_rel="noopener noreferrer",
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",  # an email has no page to be relative to
)


def sanitize_html(html: str) -> str:
    """The HTML with everything outside the allow-list removed. Idempotent."""
    return _CLEANER.clean(html or "")


# --- Plain text from HTML -------------------------------------------------------------

_BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "blockquote", "table", "ul", "ol", "hr"}
_LINE = {"br", "tr", "li", "thead", "tbody"}
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextMaker(HTMLParser):
    """Collects text runs and line-break requests (ints); breaks are resolved in `text()`."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str | int] = []
        self.links: list[tuple[str, int]] = []  # (href, where in `out` its text starts)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in _BLOCK:
            self.out.append(2)
            if tag == "hr":
                self.out += ["----", 2]
        elif tag in _LINE:
            self.out.append(1)
            if tag == "li":
                self.out.append("- ")
        elif tag in {"td", "th"}:
            self.out.append(" ")
        elif tag == "a":
            self.links.append((attrs.get("href") or "", len(self.out)))
        elif tag == "img" and attrs.get("alt"):
            self.out.append(attrs["alt"])

    def handle_endtag(self, tag):
        if tag in _BLOCK:
            self.out.append(2)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(s for s in self.out[start:] if isinstance(s, str)).strip()
            shown = href.removeprefix("mailto:").removeprefix("tel:")
            if href and shown != label:
                self.out.append(f" ({shown})" if label else shown)

    def handle_data(self, data):
        self.out.append(_SPACE.sub(" ", data))

    def text(self) -> str:
        parts: list[str] = []
        pending = 0
        for item in self.out:
            if isinstance(item, int):
                pending = max(pending, item)
            elif item.strip():
                if pending and parts:
                    parts.append("\n" * pending)
                pending = 0
                parts.append(item)
            elif not pending:
                parts.append(item)
        return "".join(parts)


def html_to_text(html: str) -> str:
    """A readable plain-text version: paragraphs as blank lines, links as “text (url)”."""
    maker = _TextMaker()
    maker.feed(html or "")
    maker.close()
    lines = [_SPACE.sub(" ", line).strip() for line in maker.text().split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- Links -------------------------------------------------------------------------------


class _LinkFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in {"href", "src"} and value:
                self.urls.append(value.strip())


_TEXT_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')]+", re.IGNORECASE)


def links_in(*, html: str = "", text: str = "") -> list[str]:
    """Every URL a reader could follow or load: href/src in the HTML, URLs in the text."""
    finder = _LinkFinder()
    finder.feed(html or "")
    finder.close()
    # A sentence's full stop or comma after a URL is not part of it.
    return finder.urls + [url.rstrip(".,;:!?") for url in _TEXT_URL.findall(text or "")]
