"""The segment filter language: a small boolean language over a member's
attributes and activity, parsed here into a tree that the compiler turns
into SQLAlchemy expressions with bound parameters. No text of a filter ever
reaches SQL: fields are looked up in ``FIELDS``, values become parameters.

Grammar (keywords are case-insensitive)::

    filter     := disjunct ("or" disjunct)*
    disjunct   := conjunct ("and" conjunct)*
    conjunct   := "not" conjunct | "(" filter ")" | comparison
    comparison := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field "between" value "and" value
                | field "is" ["not"] "null"
                | field                      (a boolean field: it is true)
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := integer | 'text' | "text" | true | false

A date field takes a text value ``'YYYY-MM-DD'``. The partner fields
(``earned_at``, ``redeemed_at``) take partner slugs with ``=`` or ``in``
only: the member earned (redeemed) at one of them, ever.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date

#: Bounds on a filter's size, so that a filter cannot make a huge query.
MAX_DEPTH = 16
MAX_COMPARISONS = 64
MAX_VALUES = 200
MAX_TEXT = 200
MAX_INTEGER = 2**62


class FieldType(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    DATE = "date"
    BOOLEAN = "boolean"
    #: Partner slugs: ``=`` and ``in`` only.
    PARTNERS = "partners"


#: Every field a filter may name, with its type and meaning (docs/segments.md
#: lists the same).
FIELDS: dict[str, tuple[FieldType, str]] = {
    "external_id": (FieldType.TEXT, "the member's id in the program"),
    "status": (FieldType.TEXT, "active, frozen or closed"),
    "tier": (FieldType.TEXT, "the member's tier code (null: no tier)"),
    "tier_since": (FieldType.DATE, "the day the member reached the tier"),
    "enrolled_on": (FieldType.DATE, "the day the member enrolled"),
    "has_email": (FieldType.BOOLEAN, "the member has an e-mail address"),
    "has_phone": (FieldType.BOOLEAN, "the member has a phone number"),
    "days_since_last_purchase": (FieldType.INTEGER, "recency (null: never purchased)"),
    "purchases": (FieldType.INTEGER, "purchases in the window"),
    "spend_minor": (FieldType.INTEGER, "spend in the window, minor units"),
    "recency_score": (FieldType.INTEGER, "RFM recency score, 0 to 5"),
    "frequency_score": (FieldType.INTEGER, "RFM frequency score, 0 to 5"),
    "monetary_score": (FieldType.INTEGER, "RFM monetary score, 0 to 5"),
    "enrolment_cohort": (FieldType.DATE, "the first day of the enrolment month"),
    "first_earning_cohort": (FieldType.DATE, "the first day of the first earning's month"),
    "earned_at": (FieldType.PARTNERS, "partners that issued the member points"),
    "redeemed_at": (FieldType.PARTNERS, "partners where the member paid with points"),
}

Value = str | int | bool | date


class FilterSyntaxError(ValueError):
    """A filter that does not parse or does not type-check; says where."""


@dataclass(frozen=True)
class Comparison:
    field: str
    #: "=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null",
    #: "is not null", "true".
    op: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Negation:
    item: Filter


Filter = Comparison | AllOf | AnyOf | Negation

_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+)"
    r"|'(?P<single>(?:[^']|'')*)'"
    r'|"(?P<double>(?:[^"]|"")*)"'
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})


@dataclass(frozen=True)
class _Token:
    kind: str  # number, text, op, word, end
    text: str
    at: int
    value: Value | None = None


def _tokens(source: str) -> list[_Token]:
    found: list[_Token] = []
    at = 0
    while at < len(source):
        if source[at:].strip() == "":
            break
        match = _TOKEN.match(source, at)
        if match is None or match.end() == at:
            raise FilterSyntaxError(f"at {at + 1}: unexpected {source[at:].strip()[:20]!r}")
        start = match.start(match.lastgroup or 0)
        kind = match.lastgroup
        if kind == "number":
            number = int(match.group("number"))
            if abs(number) > MAX_INTEGER:
                raise FilterSyntaxError(f"at {start + 1}: the number is out of range")
            found.append(_Token("number", match.group("number"), start, number))
        elif kind in ("single", "double"):
            quote = "'" if kind == "single" else '"'
            text = match.group(kind).replace(quote * 2, quote)
            if len(text) > MAX_TEXT:
                raise FilterSyntaxError(f"at {start + 1}: text longer than {MAX_TEXT} characters")
            found.append(_Token("text", text, start, text))
        elif kind == "op":
            op = match.group("op")
            found.append(_Token("op", "!=" if op == "<>" else op, start))
        else:
            found.append(_Token("word", match.group("word").lower(), start))
        at = match.end()
    found.append(_Token("end", "", len(source)))
    return found


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.position = 0
        self.comparisons = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == word

    def expect_op(self, op: str) -> None:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise _unexpected(token, f"{op!r}")

    def expect_word(self, word: str) -> None:
        token = self.take()
        if token.kind != "word" or token.text != word:
            raise _unexpected(token, f"{word!r}")

    def disjunction(self, depth: int) -> Filter:
        if depth > MAX_DEPTH:
            raise FilterSyntaxError(f"at {self.peek().at + 1}: nested deeper than {MAX_DEPTH}")
        items = [self.conjunction(depth)]
        while self.is_word("or"):
            self.take()
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def conjunction(self, depth: int) -> Filter:
        items = [self.term(depth)]
        while self.is_word("and"):
            self.take()
            items.append(self.term(depth))
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def term(self, depth: int) -> Filter:
        token = self.peek()
        if self.is_word("not"):
            self.take()
            if depth + 1 > MAX_DEPTH:
                raise FilterSyntaxError(f"at {token.at + 1}: nested deeper than {MAX_DEPTH}")
            return Negation(self.term(depth + 1))
        if token.kind == "op" and token.text == "(":
            self.take()
            inner = self.disjunction(depth + 1)
            self.expect_op(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        token = self.take()
        if token.kind != "word" or token.text in _KEYWORDS:
            raise _unexpected(token, "a field")
        if token.text not in FIELDS:
            raise FilterSyntaxError(
                f"at {token.at + 1}: no field {token.text!r}; the fields are "
                + ", ".join(sorted(FIELDS))
            )
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterSyntaxError(f"at {token.at + 1}: more than {MAX_COMPARISONS} comparisons")
        field = token.text
        kind = FIELDS[field][0]
        following = self.peek()
        if following.kind == "op" and following.text in ("=", "!=", "<", "<=", ">", ">="):
            self.take()
            return _checked(field, kind, following, following.text, (self.value(kind),))
        if self.is_word("not") or self.is_word("in"):
            negated = self.is_word("not")
            if negated:
                self.take()
            self.expect_word("in")
            self.expect_op("(")
            values = [self.value(kind)]
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                values.append(self.value(kind))
                if len(values) > MAX_VALUES:
                    raise FilterSyntaxError(f"at {following.at + 1}: more than {MAX_VALUES} values")
            self.expect_op(")")
            op = "not in" if negated else "in"
            return _checked(field, kind, following, op, tuple(values))
        if self.is_word("between"):
            self.take()
            low = self.value(kind)
            self.expect_word("and")
            high = self.value(kind)
            return _checked(field, kind, following, "between", (low, high))
        if self.is_word("is"):
            self.take()
            negated = self.is_word("not")
            if negated:
                self.take()
            self.expect_word("null")
            return _checked(field, kind, following, "is not null" if negated else "is null", ())
        if kind is FieldType.BOOLEAN:
            return Comparison(field, "true", ())
        raise _unexpected(following, f"a comparison of {field}")

    def value(self, kind: FieldType) -> Value:
        token = self.take()
        if kind is FieldType.INTEGER:
            if token.kind != "number":
                raise _unexpected(token, "an integer")
            assert isinstance(token.value, int)
            return token.value
        if kind is FieldType.BOOLEAN:
            if token.kind != "word" or token.text not in ("true", "false"):
                raise _unexpected(token, "true or false")
            return token.text == "true"
        if token.kind != "text":
            raise _unexpected(token, "a quoted text")
        text = str(token.value)
        if kind is FieldType.DATE:
            try:
                return date.fromisoformat(text) if len(text) == 10 else _bad_date(token)
            except ValueError:
                return _bad_date(token)
        return text


def _bad_date(token: _Token) -> date:
    raise FilterSyntaxError(f"at {token.at + 1}: {token.text!r} is not a date 'YYYY-MM-DD'")


def _unexpected(token: _Token, wanted: str) -> FilterSyntaxError:
    shown = "the end" if token.kind == "end" else repr(token.text)
    return FilterSyntaxError(f"at {token.at + 1}: expected {wanted}, found {shown}")


_ALLOWED: dict[FieldType, frozenset[str]] = {
    FieldType.TEXT: frozenset(
        {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null", "is not null"}
    ),
    FieldType.INTEGER: frozenset(
        {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null", "is not null"}
    ),
    FieldType.DATE: frozenset(
        {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null", "is not null"}
    ),
    FieldType.BOOLEAN: frozenset({"=", "!=", "true"}),
    FieldType.PARTNERS: frozenset({"=", "in"}),
}


def _checked(
    field: str, kind: FieldType, token: _Token, op: str, values: tuple[Value, ...]
) -> Comparison:
    if op not in _ALLOWED[kind]:
        raise FilterSyntaxError(f"at {token.at + 1}: {field} ({kind.value}) takes no {op!r}")
    return Comparison(field, op, values)


def parse_filter(source: str) -> Filter:
    """The filter's tree; ``FilterSyntaxError`` saying where it fails."""
    parser = _Parser(source)
    if parser.peek().kind == "end":
        raise FilterSyntaxError("at 1: the filter is empty")
    tree = parser.disjunction(0)
    if parser.peek().kind != "end":
        raise _unexpected(parser.peek(), "'and', 'or' or the end")
    return tree


def fields_of(tree: Filter) -> set[str]:
    """The fields a filter names (the compiler computes only those)."""
    if isinstance(tree, Comparison):
        return {tree.field}
    if isinstance(tree, Negation):
        return fields_of(tree.item)
    return set().union(*(fields_of(item) for item in tree.items))


def partner_slugs(tree: Filter) -> set[str]:
    """The partner slugs a filter names (the compiler resolves them)."""
    if isinstance(tree, Comparison):
        if FIELDS[tree.field][0] is FieldType.PARTNERS:
            return {str(v) for v in tree.values}
        return set()
    if isinstance(tree, Negation):
        return partner_slugs(tree.item)
    return set().union(*(partner_slugs(item) for item in tree.items))
