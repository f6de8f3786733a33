"""The campaign content language (prefcenter.domain.placeholders): three placeholders and nothing else."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from prefcenter.domain.placeholders import PLACEHOLDERS, PlaceholderError, Template, parse, render

VALUES = {
    "customer_id": "c-1",
    "manage_url": "https://p.example/m/tok?a=1&b=2",
    "unsubscribe_url": "https://p.example/u/<tok>",
}
LOOP = "{% for i in range(100000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}"


def error(source: str) -> PlaceholderError:
    with pytest.raises(PlaceholderError) as info:
        parse(source)
    return info.value


def test_placeholders_are_substituted() -> None:
    source = "Hi {{ customer_id }}, manage: {{ manage_url }} / stop: {{ unsubscribe_url }}."
    assert render(source, VALUES) == (
        "Hi c-1, manage: https://p.example/m/tok?a=1&b=2 / stop: https://p.example/u/<tok>."
    )
    assert parse(source).used == PLACEHOLDERS
    assert parse("{{ customer_id }}{{ customer_id }}").render(VALUES) == "c-1c-1"


@pytest.mark.parametrize(
    "source",
    [
        "{{customer_id}}",
        "{{ customer_id }}",
        "{{\tcustomer_id\t}}",
        "{{   customer_id}}",
        "{{customer_id \t }}",
    ],
)
def test_spaces_and_tabs_inside_the_braces(source: str) -> None:
    assert parse(source) == Template(("", ""), ("customer_id",))
    assert render(f"<{source}>", VALUES) == "<c-1>"


def test_html_escaping_applies_to_values_not_to_the_text() -> None:
    source = '<a href="{{ manage_url }}">x</a> {{ unsubscribe_url }}'
    html = render(source, VALUES, escape)
    assert html == '<a href="https://p.example/m/tok?a=1&amp;b=2">x</a> https://p.example/u/&lt;tok&gt;'
    assert type(html) is str
    hostile = {**VALUES, "customer_id": "<script>\"'&"}
    assert render("{{ customer_id }}", hostile, escape) == "&lt;script&gt;&#34;&#39;&amp;"
    assert render("{{ customer_id }}", hostile) == "<script>\"'&"


@pytest.mark.parametrize(
    "source",
    [
        "}}",
        "a}}b",
        "@media print{a{color:red}}",
        "a{color:red}",
        "{",
        "x{",
        "{ {",
        "{ %",
        "{ #",
        "{}",
        '{"json": {"nested": 1}}',
        "{{ customer_id }}}",
        "}}{{ customer_id }}}}",
    ],
)
def test_plain_braces_are_text(source: str) -> None:
    template = parse(source)
    assert template.render(VALUES).replace("c-1", "{{ customer_id }}") == source


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (LOOP, ["statement", "'{%'"]),
        ("{% if true %}x{% endif %}", ["statement"]),
        ("{%raw%}{{ x }}{%endraw%}", ["statement"]),
        ("{# a comment #}", ["comment"]),
        ("{{ customer_id|upper }}", ["'{{ customer_id|upper }}'", "not a placeholder", "filters"]),
        ("{{ customer_id + 1 }}", ["not a placeholder"]),
        ("{{ ''.__class__ }}", ["not a placeholder"]),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", ["not a placeholder"]),
        ("{{ range(10**9) }}", ["not a placeholder"]),
        ("{{ customer_id", ["not closed"]),
        ("{{", ["not closed"]),
        ("{{ password }}", ["unknown placeholder 'password'"]),
        ("{{ Customer_ID }}", ["unknown placeholder"]),
        ("{{- customer_id }}", ["not a placeholder"]),
        ("{{ customer_id -}}", ["not a placeholder"]),
        ("{{ customer_id\n}}", ["not a placeholder"]),
        ("{{ }}", ["not a placeholder"]),
        ("{{{ customer_id }}", ["not a placeholder"]),
        ("@media screen{#main{color:red}}", ["comment", "'{ #'"]),
    ],
)
def test_anything_else_is_an_error(source: str, words: list[str]) -> None:
    exc = error(source)
    for word in words:
        assert word in exc.reason, exc
    assert str(exc).startswith(f"line {exc.line}, column {exc.column}: ")
    assert "{{ customer_id }}" in exc.reason or "comment" in exc.reason


def test_error_position_is_the_opening_of_the_construct() -> None:
    exc = error("Hello {{ customer_id }},\n\n  see {{ manage_url|safe }} now")
    assert (exc.line, exc.column) == (3, 7)
    assert str(exc).startswith("line 3, column 7: ")
    assert (error("{% x %}").line, error("{% x %}").column) == (1, 1)
    assert (error("ab\r\ncd{#").line, error("ab\r\ncd{#").column) == (2, 3)
    # The first error is reported; text after it is not looked at.
    assert error("{{ nope }} {% for %}").reason.startswith("unknown placeholder")


def test_error_messages_quote_little_of_a_long_construct() -> None:
    exc = error("{{ " + "x" * 10_000 + " }}")
    assert len(str(exc)) < 300
    exc = error("{{ customer_id | " + "y" * 10_000 + " }}")
    assert len(str(exc)) < 300 and "..." in str(exc)


def test_the_loop_reproduction_is_rejected_quickly_and_large_content_is_linear() -> None:
    start = time.perf_counter()
    error(LOOP)
    error("{" * 200_000)
    error("x" * 200_000 + "{{ customer_id")
    big = "a{b}}c " * 14_000 + "{{ customer_id }}" * 2_000
    assert render(big, VALUES).count("c-1") == 2_000
    assert time.perf_counter() - start < 1.0


def test_a_missing_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="customer_id"):
        render("{{ customer_id }}", {})


def test_parse_is_cached_by_source() -> None:
    source = "cached {{ customer_id }} " + "z" * 50
    assert parse(source) is parse(source)
    assert parse(source) is parse("".join(["cached {{ customer_id }} ", "z" * 50]))


@given(st.text().filter(lambda s: "{" not in s))
def test_text_without_an_opening_brace_renders_to_itself(text: str) -> None:
    assert render(text, VALUES) == text
    assert render(text, VALUES, escape) == text


_pieces = st.one_of(
    st.sampled_from(sorted(PLACEHOLDERS)).map(lambda n: ("name", n)),
    st.text(st.characters(blacklist_characters="{"), max_size=20).map(lambda t: ("text", t)),
)
_spaces = st.text(st.sampled_from(" \t"), max_size=3)


@given(st.lists(st.tuples(_pieces, _spaces, _spaces), max_size=20), st.booleans())
def test_placeholder_sequences_render_to_the_concatenation(
    pieces: list[tuple[tuple[str, str], str, str]], html: bool
) -> None:
    source = "".join(
        "{{" + left + value + right + "}}" if kind == "name" else value
        for (kind, value), left, right in pieces
    )
    quote = (lambda v: str(escape(v))) if html else str
    expected = "".join(quote(VALUES[value]) if kind == "name" else value for (kind, value), _, _ in pieces)
    assert render(source, VALUES, quote) == expected
    assert parse(source).names == tuple(value for (kind, value), _, _ in pieces if kind == "name")


@given(st.text(alphabet="{}%# ab_\n", max_size=40))
def test_any_text_either_parses_or_fails_with_a_position_inside_it(source: str) -> None:
    try:
        template = parse(source)
    except PlaceholderError as exc:
        lines = source.split("\n")
        assert 1 <= exc.line <= len(lines)
        assert 1 <= exc.column <= len(lines[exc.line - 1])
        assert lines[exc.line - 1][exc.column - 1 :][:2] in ("{{", "{%", "{#")
    else:
        assert template.names == ()  # the alphabet cannot spell a placeholder name
        assert template.render(VALUES) == source
