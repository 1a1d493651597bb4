"""The personalisation sandbox: staff-written apologies are data, rendered here and nowhere else.

A template may print seven plain placeholders, pass them through five harmless
filters, and branch on them with {% if %}. Nothing else: no attribute access, no
indexing, no calls, no loops, no assignments, no other templates, no arithmetic.

Two walls, so that one mistake is not enough:

1. At save time, `check_template` walks the parsed template and refuses every
   node that is not on the allow-list, with the line and the reason.
2. At render time, `_Sandbox` (Jinja2's ImmutableSandboxedEnvironment, tightened)
   refuses attribute access, indexing, calls and operators even for a template
   that somehow skipped the check, has no globals, no tests, no loader and only
   the allowed filters. Output is counted while it is generated and cut off at
   MESSAGE_MAX_RENDERED_BYTES.

The HTML part is autoescaped (a customer called `<b>Eve</b>` stays text) and then
sanitised again (campaigns.sanitize); subject and text are not escaped, since
they are not HTML. A subject is always one line.
"""

import functools
import re
from dataclasses import dataclass
from email.utils import formataddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import formats, timezone, translation
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns import sanitize

# --- What a template may use ----------------------------------------------------

PLACEHOLDERS: dict[str, str] = {
    "first_name": "The person's first name from the send log, or empty",
    "customer_id": "The customer id from the send log, or empty",
    "incident_reference": "The incident reference, such as INC-2026-0001",
    "original_send_date": "The date the mis-sent email reached the person",
    "verification_code": "The code that proves the message is genuine",
    "company_name": "Your company's name",
    "verification_url": "The page where the code can be checked (VERIFICATION_URL)",
}


def _default(value, fallback=""):
    """`default` applies to an empty value too: placeholders are never undefined, only empty."""
    return value if value else fallback


def _trim(value):
    return str(value).strip()


# name -> (function, the most arguments it takes). Each returns text no longer
# than its input plus its constant argument, so output stays bounded by the source.
FILTERS: dict[str, tuple] = {
    "default": (_default, 1),
    "upper": (lambda value: str(value).upper(), 0),
    "lower": (lambda value: str(value).lower(), 0),
    "title": (lambda value: str(value).title(), 0),
    "capitalize": (lambda value: str(value).capitalize(), 0),
    "trim": (_trim, 0),
}

PARTS = ("subject", "text", "html")
SUBJECT_MAX_CHARS = 1000  # a hard limit on the subject source; warnings start at 78

_AVAILABLE = ", ".join(PLACEHOLDERS)
_FILTERS_AVAILABLE = ", ".join(FILTERS)
_IF_HINT = "{% if first_name %} … {% elif … %} … {% else %} … {% endif %}"


class TemplateProblem(ValidationError):
    """A template uses something the sandbox does not allow. Messages start with the line."""


class RenderError(ValidationError):
    """A version could not be rendered: too large, or refused by the sandbox."""


# --- Render-time wall -------------------------------------------------------------


class _Sandbox(ImmutableSandboxedEnvironment):
    """No attributes, no items, no calls, no operators: placeholders are plain values."""

    # Intercepting every operator also stops Jinja folding constants such as
    # 9**9**9 at compile time (it never folds an intercepted operator).
    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])
    intercepted_unops = frozenset(["+", "-"])

    def is_safe_attribute(self, obj, attr, value):
        return False

    def is_safe_callable(self, obj):
        return False

    def getattr(self, obj, attribute):
        raise SecurityError(f"attribute access ({attribute!r}) is not allowed")

    def getitem(self, obj, argument):
        raise SecurityError("indexing is not allowed")

    def call(__self, __context, __obj, *args, **kwargs):  # Jinja's signature
        raise SecurityError("calls are not allowed")

    def call_binop(self, context, operator, left, right):
        raise SecurityError(f"the operator {operator!r} is not allowed")

    def call_unop(self, context, operator, arg):
        raise SecurityError(f"the operator {operator!r} is not allowed")


def _only_plain(value):
    """Print text and numbers only: never an object's repr, whatever reached the context."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise SecurityError(f"only plain values can be printed, not {type(value).__name__!r}")


def _environment(*, autoescape: bool) -> _Sandbox:
    env = _Sandbox(
        finalize=_only_plain,
        loader=None,  # nothing to include, import or extend
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters = {name: func for name, (func, _arity) in FILTERS.items()}
    env.tests = {}
    env.globals = {}
    return env


TEXT_ENV = _environment(autoescape=False)  # subject and plain text
HTML_ENV = _environment(autoescape=True)  # the HTML part


def environment_for(part: str) -> _Sandbox:
    return HTML_ENV if part == "html" else TEXT_ENV


# --- Save-time wall -----------------------------------------------------------------

_FORBIDDEN: dict[type, str] = {
    nodes.Getattr: "“.” reaches inside a value; placeholders are plain values, "
    "use one on its own, such as {{ first_name }}",
    nodes.Getitem: "“[…]” (indexing) is not allowed; use a placeholder on its own",
    nodes.Slice: "“[…]” (slicing) is not allowed",
    nodes.Call: "calling something with “(…)” is not allowed",
    nodes.For: "“{% for %}” loops are not allowed",
    nodes.Assign: "“{% set %}” is not allowed",
    nodes.AssignBlock: "“{% set %}” is not allowed",
    nodes.Macro: "“{% macro %}” is not allowed",
    nodes.CallBlock: "“{% call %}” is not allowed",
    nodes.Include: "“{% include %}” is not allowed: a message cannot load other templates",
    nodes.Import: "“{% import %}” is not allowed: a message cannot load other templates",
    nodes.FromImport: "“{% from … import %}” is not allowed: a message cannot load other templates",
    nodes.Extends: "“{% extends %}” is not allowed: a message cannot load other templates",
    nodes.Block: "“{% block %}” is not allowed",
    nodes.FilterBlock: "“{% filter %}” blocks are not allowed; put the filter on a placeholder",
    nodes.Scope: "“{% with %}” and “{% autoescape %}” are not allowed",
    nodes.ScopedEvalContextModifier: "“{% autoescape %}” is not allowed",
    nodes.EvalContextModifier: "“{% autoescape %}” is not allowed",
    nodes.With: "“{% with %}” is not allowed",
    nodes.Test: "tests with “is” are not allowed; write {% if first_name %}",
    nodes.CondExpr: f"“… if … else …” inside {{{{ }}}} is not allowed; use {_IF_HINT}",
    nodes.Concat: "joining with “~” is not allowed; write the placeholders next to each other",
    nodes.Compare: "comparisons are not allowed; test a placeholder on its own",
    nodes.Not: "“not” works only in {% if %}",
    nodes.And: "“and” works only in {% if %}",
    nodes.Or: "“or” works only in {% if %}",
    nodes.BinExpr: "arithmetic is not allowed",
    nodes.UnaryExpr: "arithmetic is not allowed",
    nodes.Tuple: "lists, tuples and dicts are not allowed",
    nodes.List: "lists, tuples and dicts are not allowed",
    nodes.Dict: "lists, tuples and dicts are not allowed",
    nodes.ExprStmt: "“{% do %}” is not allowed",
    nodes.Break: "“{% break %}” is not allowed",
    nodes.Continue: "“{% continue %}” is not allowed",
}


def _name_problem(name: str) -> str:
    return f"“{name}” is not a placeholder you can use. Available: {_AVAILABLE}."


class _Checker:
    """Walks a parsed template; collects (line, reason) for everything not allowed."""

    def __init__(self):
        self.problems: list[tuple[int, str]] = []

    def refuse(self, node: nodes.Node, reason: str) -> None:
        lineno = getattr(node, "lineno", 0) or next(
            (child.lineno for child in node.find_all(nodes.Node) if child.lineno), 0
        )
        self.problems.append((lineno, reason))

    def statements(self, body: list[nodes.Node]) -> None:
        for node in body:
            self.statement(node)

    def statement(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    continue
                self.expression(child)
        elif isinstance(node, nodes.If):
            self.condition(node.test)
            self.statements(node.body)
            for elif_ in node.elif_:
                self.condition(elif_.test)
                self.statements(elif_.body)
            self.statements(node.else_)
        else:
            self.forbidden(node)

    def condition(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Not):
            self.condition(node.node)
        elif isinstance(node, nodes.And | nodes.Or):
            self.condition(node.left)
            self.condition(node.right)
        else:
            self.expression(node)

    def expression(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx != "load" or node.name not in PLACEHOLDERS:
                self.refuse(node, _name_problem(node.name))
        elif isinstance(node, nodes.Const):
            if not isinstance(node.value, str):
                self.refuse(node, "only text in quotes can be written inside {{ }}")
        elif isinstance(node, nodes.Filter):
            self.filter(node)
        else:
            self.forbidden(node)

    def filter(self, node: nodes.Filter) -> None:
        if node.node is None:  # only a {% filter %} block has no value
            self.forbidden(node)
            return
        self.expression(node.node)
        if node.name not in FILTERS:
            self.refuse(
                node,
                f"“{node.name}” is not a filter you can use. Available: {_FILTERS_AVAILABLE}.",
            )
            return
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            self.refuse(node, f"the filter “{node.name}” takes no named arguments")
            return
        arity = FILTERS[node.name][1]
        if len(node.args) > arity:
            takes = "no arguments" if arity == 0 else "one argument in quotes"
            self.refuse(node, f"the filter “{node.name}” takes {takes}")
            return
        for arg in node.args:
            if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
                self.refuse(arg, f"the argument of “{node.name}” must be text in quotes")

    def forbidden(self, node: nodes.Node) -> None:
        reason = next(
            (reason for kind, reason in _FORBIDDEN.items() if isinstance(node, kind)),
            f"“{type(node).__name__}” is not allowed in a message",
        )
        self.refuse(node, reason)
        if isinstance(node, nodes.Expr):
            # Say everything that is wrong inside, too: {{ range(10**9) }} names
            # both the call and “range”.
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Expr) and not isinstance(child, nodes.Const):
                    self.expression(child)


_UNKNOWN_TAG = re.compile(r"unknown tag '(\w+)'")


def _syntax_reason(exc: TemplateSyntaxError) -> str:
    if match := _UNKNOWN_TAG.search(exc.message or ""):
        return f"“{{% {match.group(1)} %}}” is not allowed. You can use {_IF_HINT}."
    message = (exc.message or "").rstrip(".")
    return f"the template cannot be read ({message}); check the {{{{ }}}} and {{% %}} pairs"


def check_template(source: str, *, part: str) -> None:
    """Refuse, with the line and the reason, anything the sandbox does not allow.

    `part` is "subject", "text" or "html". Raises TemplateProblem with one message
    per problem, each starting "Line N: ".
    """
    limit = settings.MESSAGE_MAX_TEMPLATE_BYTES
    if len(source.encode()) > limit:
        raise TemplateProblem(
            f"This part is {len(source.encode()):,} bytes; a message part holds at most "
            f"{limit:,} bytes."
        )
    env = environment_for(part)
    try:
        # Raw blocks would print {{ … }} literally; harmless, but they only serve
        # to confuse a reader about what the customer will see.
        for lineno, token, _value in env.lex(source):
            if token == "raw_begin":
                raise TemplateProblem(f"Line {lineno}: “{{% raw %}}” is not allowed.")
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"Line {exc.lineno}: {_syntax_reason(exc)}.") from None
    checker = _Checker()
    checker.statements(tree.body)
    if checker.problems:
        seen, messages = set(), []
        for line, reason in sorted(checker.problems):
            if (line, reason) not in seen:
                seen.add((line, reason))
                messages.append(f"Line {line}: {reason}" + ("" if reason.endswith(".") else "."))
        raise TemplateProblem(messages)


# --- Rendering ---------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _compiled(source: str, part: str):
    # Only sources that passed check_template reach here; compiled templates are
    # immutable, so one per (source, part) is shared by every render.
    return environment_for(part).from_string(source)


class _Budget:
    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def render(self, source: str, part: str, context: dict) -> str:
        chunks = []
        try:
            template = _compiled(source, part)
            # generate() would copy the context into a new chain of dicts for every part;
            # ours is already a fresh dict of plain strings, and there are no globals.
            for chunk in template.root_render_func(template.new_context(context, shared=True)):
                # ASCII is one byte a character: no need to encode it to count it.
                self.used += len(chunk) if chunk.isascii() else len(chunk.encode())
                if self.used > self.limit:
                    raise RenderError(
                        f"The rendered message is larger than {self.limit:,} bytes, the limit "
                        "(MESSAGE_MAX_RENDERED_BYTES). Shorten it."
                    )
                chunks.append(chunk)
        except (SecurityError, UndefinedError) as exc:
            raise RenderError(f"The {part} could not be rendered safely: {exc}") from None
        return "".join(chunks)


def render_parts(variant: dict, context: dict) -> dict:
    """Render one locale's subject, text and HTML with `context`, within the size cap.

    The HTML is sanitised again after rendering; a missing text is derived from it.
    Returns {"subject", "text", "html", "text_derived"}.
    """
    return _render_plain_parts(variant, plain_context(context))


def _render_plain_parts(variant: dict, context: dict[str, str]) -> dict:
    """render_parts for a context that is already plain_context's output."""
    budget = _Budget(settings.MESSAGE_MAX_RENDERED_BYTES)
    subject = " ".join(budget.render(variant.get("subject", ""), "subject", context).split())
    html = variant.get("html", "")
    html = sanitize.sanitize_html(budget.render(html, "html", context)) if html else ""
    text = variant.get("text", "")
    derived = not text.strip()
    text = sanitize.html_to_text(html) if derived else budget.render(text, "text", context)
    return {"subject": subject, "text": text, "html": html, "text_derived": derived}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
CONTEXT_VALUE_MAX_CHARS = 200


def _plain(value) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    text = _CONTROL.sub("", str(value)).replace("\n", " ").strip()
    return text[:CONTEXT_VALUE_MAX_CHARS]


def plain_context(context: dict) -> dict[str, str]:
    """Exactly the placeholders, each a short one-line string; anything else is dropped."""
    return {name: _plain(context.get(name, "")) for name in PLACEHOLDERS}


# --- Contexts ----------------------------------------------------------------------


def _date_for(value, locale: str) -> str:
    if not value:
        return ""
    language = (locale or settings.LANGUAGE_CODE).split("-")[0]
    with translation.override(language):
        return formats.date_format(timezone.localdate(value), "DATE_FORMAT")


def render_context(*, person, incident, verification_code: str, locale: str = "") -> dict:
    """The placeholders for one affected person: plain strings, nothing else.

    `locale` decides the date format; by default the person's own locale.
    """
    metadata = person.metadata if isinstance(person.metadata, dict) else {}
    return plain_context(
        {
            "first_name": metadata.get("first_name", ""),
            "customer_id": person.customer_id,
            "incident_reference": incident.reference,
            "original_send_date": _date_for(person.first_sent_at, locale or person.locale),
            "verification_code": verification_code,
            "company_name": settings.COMPANY_NAME,
            "verification_url": settings.VERIFICATION_URL,
        }
    )


SAMPLE_VERIFICATION_CODE = "SAMPLE-0000"


def sample_context(*, incident, locale: str = "") -> dict:
    """Made-up values for a preview or a test send: no real person's data."""
    return plain_context(
        {
            "first_name": "Alex",
            "customer_id": "C-000000",
            "incident_reference": incident.reference,
            "original_send_date": _date_for(incident.sent_from or timezone.now(), locale),
            "verification_code": SAMPLE_VERIFICATION_CODE,
            "company_name": settings.COMPANY_NAME,
            "verification_url": settings.VERIFICATION_URL,
        }
    )


# --- Versions ------------------------------------------------------------------------


def normalise_locale(value: str) -> str:
    return (value or "").strip().lower().replace("_", "-")


def choose_locale(available, wanted: str, fallback: str) -> tuple[str, bool]:
    """The variant for a person's locale: exact, then its language ("de-at" → "de").

    Returns (locale, fell_back). An empty `wanted` takes the fallback without
    counting as a fall-back.
    """
    available = set(available)
    wanted = normalise_locale(wanted)
    if not wanted:
        return fallback, False
    if wanted in available:
        return wanted, False
    language = wanted.split("-")[0]
    if language in available:
        return language, False
    return fallback, True


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    from_email: str
    reply_to: str
    text: str
    html: str
    locale: str
    fell_back: bool = False  # the person's locale has no variant; this is the fallback
    text_derived: bool = False  # the version has no plain text; it was made from the HTML


def sender_of(version) -> str:
    return formataddr((version.sender_name, version.sender_address))


def render_version(
    *, version, person=None, locale: str | None = None, context: dict | None = None
) -> RenderedMessage:
    """Render `version` as one person (or a sample) would receive it.

    - `locale`: show this variant; otherwise the person's locale, else the fallback.
    - `context`: the placeholders to use (the sending path passes render_context(...)
      with the real verification code); otherwise the person's values with a sample
      code, or, without a person, sample values.
    Raises RenderError when the output is over MESSAGE_MAX_RENDERED_BYTES.
    """
    incident = version.message.incident
    fell_back = False
    if locale:
        chosen = normalise_locale(locale)
        if chosen not in version.content:
            raise RenderError(f"Version {version.number} has no “{chosen}” variant.")
    elif person is not None:
        chosen, fell_back = choose_locale(version.content, person.locale, version.fallback_locale)
    else:
        chosen = version.fallback_locale
    if context is None:
        if person is not None:
            context = render_context(
                person=person,
                incident=incident,
                verification_code=SAMPLE_VERIFICATION_CODE,
                locale=chosen,
            )
        else:
            context = sample_context(incident=incident, locale=chosen)
    parts = render_parts(version.content[chosen], context)
    return RenderedMessage(
        subject=parts["subject"],
        from_email=sender_of(version),
        reply_to=version.reply_to,
        text=parts["text"],
        html=parts["html"],
        locale=chosen,
        fell_back=fell_back,
        text_derived=parts["text_derived"],
    )


class Renderer:
    """render_version for many people of one version: what they share is worked out once.

    A send job renders hundreds of messages of one version. The sender, the
    incident reference, the company name, the variant chosen for each locale
    and each send date in each language are the same for all of them, so they
    are computed on first use and kept; each message then only fills its own
    placeholders into the compiled templates. The result is what render_version
    gives for the same person, locale and context (a test holds them equal).
    """

    def __init__(self, version, *, incident=None):
        self.version = version
        self.incident = incident or version.message.incident
        self.from_email = sender_of(version)
        self._timezone = timezone.get_current_timezone()
        self._reference = _plain(self.incident.reference)
        self._company = _plain(settings.COMPANY_NAME)
        self._locales: dict[str, tuple[str, bool]] = {}
        self._dates: dict[tuple, str] = {}

    def locale_for(self, wanted: str) -> tuple[str, bool]:
        """choose_locale for this version, remembered per wanted locale."""
        found = self._locales.get(wanted)
        if found is None:
            version = self.version
            found = choose_locale(version.content, wanted, version.fallback_locale)
            self._locales[wanted] = found
        return found

    def _date(self, value, locale: str) -> str:
        if not value:
            return ""
        language = (locale or settings.LANGUAGE_CODE).split("-")[0]
        key = (value.astimezone(self._timezone).date(), language)
        text = self._dates.get(key)
        if text is None:
            text = self._dates[key] = _plain(_date_for(value, locale))
        return text

    def context(self, *, person, verification_code: str, locale: str = "") -> dict[str, str]:
        """render_context(person=…, incident=…, verification_code=…, locale=…), the same values."""
        metadata = person.metadata if isinstance(person.metadata, dict) else {}
        return {
            "first_name": _plain(metadata.get("first_name", "")),
            "customer_id": _plain(person.customer_id),
            "incident_reference": self._reference,
            "original_send_date": self._date(person.first_sent_at, locale or person.locale),
            "verification_code": _plain(verification_code),
            "company_name": self._company,
            "verification_url": _plain(settings.VERIFICATION_URL),
        }

    def render(self, *, person, verification_code: str, wanted_locale: str) -> RenderedMessage:
        """The person's message in the variant for `wanted_locale` (else the fallback)."""
        locale, fell_back = self.locale_for(wanted_locale)
        context = self.context(person=person, verification_code=verification_code, locale=locale)
        parts = _render_plain_parts(self.version.content[locale], context)
        return RenderedMessage(
            subject=parts["subject"],
            from_email=self.from_email,
            reply_to=self.version.reply_to,
            text=parts["text"],
            html=parts["html"],
            locale=locale,
            fell_back=fell_back,
            text_derived=parts["text_derived"],
        )
