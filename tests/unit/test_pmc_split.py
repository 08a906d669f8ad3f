"""A PMC TASK line splits as pegasus-mpi-cluster's own tokenizer (split_args) splits it."""

from __future__ import annotations

import pytest

from fluxlite.cluster.formats import parse, pmc_split

# the cases of pegasus-mpi-cluster's test-strlib.cpp, and what they show
PMC_OWN = [
    ("foo bar", ["foo", "bar"]),
    ('"a b c"', ["a b c"]),
    ("\"first one\" 'second one'", ["first one", "second one"]),
    ("'first one' 'second one'", ["first one", "second one"]),
    ('"unterminated quoted string', ["unterminated quoted string"]),
    ('"with \\" quote"', ['with " quote']),
    ("escapeatend\\", ["escapeatend\\"]),
    ("escape\\b", ["escapeb"]),
]
NOT_A_SHELL = [
    # a backslash escapes the next character inside quotes too (sh keeps it before 'x')
    ('"a\\x"', ["ax"]),
    ("'\\$1'", ["$1"]),
    # ' and " are one quote: they do not nest, the second closes the first
    ("\"awk '\\$1 > 0' f\"", ["awk ", "$1", ">", "0 f"]),
    # a closing quote ends the word there, an empty one included
    ('a"b c"d', ["ab c", "d"]),
    ('x ""', ["x", ""]),
    # blanks are C's isspace()
    ("a\x0bb\x0cc\rd", ["a", "b", "c", "d"]),
]


@pytest.mark.parametrize(("line", "words"), PMC_OWN + NOT_A_SHELL)
def test_pmc_split(line: str, words: list[str]) -> None:
    assert pmc_split(line) == words


def test_a_task_line_keeps_no_backslash(tmp_path, caplog) -> None:  # noqa: ANN001
    text = ("TASK a /bin/sh -c \"awk \\'\\$1 > 0\\' f\"\n"
            "TASK b awk '$1 > 0' f\n"
            "TASK c /bin/sh -c \"awk '\\$1 > 0' f\"\n")
    g = parse(text, str(tmp_path / "t.dag"), "pmc")
    assert g.tasks["a"].argv == ["/bin/sh", "-c", "awk '$1 > 0' f"]
    assert g.tasks["b"].argv == ["awk", "$1 > 0", "f"]
    assert g.tasks["c"].argv == ["/bin/sh", "-c", "awk ", "$1", ">", "0 f"]
    warned = [r.getMessage() for r in caplog.records if "do not nest" in r.getMessage()]
    assert len(warned) == 1 and "t.dag:3: a ' closes the \" before it" in warned[0]


def test_the_task_id_is_not_unquoted(tmp_path) -> None:  # noqa: ANN001
    # PMC splits TASK, the id and the rest on blanks; only the rest is tokenized
    g = parse('TASK "a" /bin/echo "x y"\n', str(tmp_path / "t.dag"), "pmc")
    assert list(g.tasks) == ['"a"'] and g.tasks['"a"'].argv == ["/bin/echo", "x y"]
