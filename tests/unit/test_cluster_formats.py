"""Cluster inputs: format detection, parsing, and the checks made before anything runs."""

from __future__ import annotations

import pytest

from fluxlite.cluster.formats import ClusterInputError, detect, parse


def test_detect() -> None:
    assert detect("# c\n\nTASK a /bin/true\n") == "pmc"
    assert detect("  [{}]") == "json"
    assert detect('{"tasks": []}') == "json"
    assert detect("#@ 1 tr id\n/bin/true\n") == "list"


def test_pmc_options_and_edges() -> None:
    g = parse('TASK a -m 100 -c 2 -g 1 -t 3 -p -5 -f OUT=x.txt -F s=d /bin/echo "a b" c\n'
              "TASK b --request-cpus=1 /bin/true\nEDGE a b\n", "t.dag")
    a, b = g.tasks["a"], g.tasks["b"]
    assert (a.memory_mb, a.cores, a.gpus, a.tries, a.priority) == (100, 2, 1, 3, -5)
    assert a.argv == ["/bin/echo", "a b", "c"]
    assert a.pipe_forward == [("OUT", "x.txt")] and a.file_forward == [("s", "d")]
    assert b.parents == ["a"] and a.children == ["b"]


def test_list_names_and_shell_lines() -> None:
    g = parse("#@ 7 tr::x ID7\n/bin/true a\necho a | cat\n", "m.in")
    t1, t2 = g.tasks.values()
    assert (t1.id, t1.name, t1.derivation, t1.argv) == ("7", "tr::x", "ID7", ["/bin/true", "a"])
    assert t2.command == "echo a | cat" and t2.argv is None and t2.name == "echo"


def test_json_tasks() -> None:
    g = parse('{"tasks": [{"id": "a", "executable": "/bin/true", "priority": 3},'
              '{"id": "b", "after": ["a"], "tries": 2, "executable": "/bin/true",'
              '"resources": {"tasks": 2, "cores_per_task": 3}}]}', "j.json")
    assert g.tasks["a"].priority == 3 and g.tasks["b"].tries == 2
    assert g.tasks["b"].cores == 6 and g.tasks["b"].parents == ["a"]


def test_long_cycle_is_named_from_its_first_task() -> None:
    text = "".join(f"TASK t{i} /bin/true\n" for i in range(4))
    text += "EDGE t0 t1\nEDGE t1 t2\nEDGE t2 t3\nEDGE t3 t1\n"
    with pytest.raises(ClusterInputError) as exc:
        parse(text, "c.dag")
    assert str(exc.value) == "c.dag:2: dependency cycle: t1 -> t2 -> t3 -> t1"


def test_fits() -> None:
    g = parse("TASK a -m 5000 /bin/true\n", "m.dag")
    with pytest.raises(ClusterInputError, match="m.dag:1: task 'a' asks for 5000 MB"):
        g.check_fits(4, 0, 1000, "the local executor")
    g.check_fits(4, 0, 0, "the Flux instance")  # memory not accounted: no check


def test_list_starting_with_a_test_bracket_is_a_list() -> None:
    # '[ -e f ] && cmd' and '{ a; b; }' are shell lines, not JSON
    assert detect("[ -e x ] && /bin/true\n") == "list"
    assert detect("{ echo a; echo b; }\n") == "list"
    assert detect("[\n  {\"id\": \"a\"}\n]") == "json"
    assert detect("[]") == "json"


def test_list_assignments_and_builtins_go_to_the_shell() -> None:
    g = parse("X=1 /usr/bin/env\nexit 0\ncd /tmp\n/bin/echo a=b\n", "m.in")
    t1, t2, t3, t4 = g.tasks.values()
    assert t1.command == "X=1 /usr/bin/env" and t1.argv is None
    assert t2.command == "exit 0" and t3.command == "cd /tmp"
    assert t4.argv == ["/bin/echo", "a=b"]


def test_pmc_pegasus_comments_name_the_next_task() -> None:
    g = parse("#@ 1 diamond::preprocess:4.0 ID0000001\nTASK ID0000001 /bin/true\n"
              "TASK b /bin/true\n", "p.dag")
    a, b = g.tasks.values()
    assert (a.name, a.derivation) == ("diamond::preprocess:4.0", "ID0000001")
    assert (b.name, b.derivation) == ("true", "b")


def test_pmc_fractional_memory_and_cpus_round_up() -> None:
    # PMC reads -m and -c as numbers and rounds them up to whole MB and cpus
    g = parse("TASK a -m 0.5 -c 1.2 /bin/true\nTASK b --request-memory=100.0 -c 2 /bin/true\n"
              "TASK c -c 0 -m 0 /bin/true\n", "f.dag")
    a, b, c = g.tasks.values()
    assert (a.memory_mb, a.cores) == (1, 2)
    assert (b.memory_mb, b.cores) == (100, 2)
    assert (c.memory_mb, c.cores) == (0, 1)  # PMC accepts -c 0; a process still needs a core


def test_pmc_tries_zero_is_one_try_and_unsaid_tries_are_left_to_the_default() -> None:
    # PMC retries while failures < tries: -t 0 gives the single try -t 1 gives
    g = parse("TASK a -t 0 /bin/true\nTASK b -t 1 /bin/true\nTASK c /bin/true\n", "t.dag")
    a, b, c = g.tasks.values()
    assert (a.tries, b.tries) == (1, 1)
    assert c.tries == 0  # not said: the cluster's --tries applies


@pytest.mark.parametrize(("line", "message"), [
    ("TASK a -m -1 /bin/true", "t.dag:1: task 'a': -m must not be negative"),
    ("TASK a -c -0.5 /bin/true", "t.dag:1: task 'a': -c must not be negative"),
    ("TASK a -t -1 /bin/true", "t.dag:1: task 'a': -t must not be negative"),
    ("TASK a -m lots /bin/true", "t.dag:1: task 'a': -m needs an integer or a decimal number, not 'lots'"),
    ("TASK a -c nan /bin/true", "t.dag:1: task 'a': -c needs an integer or a decimal number, not 'nan'"),
    ("TASK a -t 1.5 /bin/true", "t.dag:1: task 'a': -t needs an integer, not '1.5'"),
])
def test_pmc_bad_numbers(line: str, message: str) -> None:
    with pytest.raises(ClusterInputError) as exc:
        parse(line + "\n", "t.dag")
    assert str(exc.value) == message


def test_lines_end_only_at_newlines() -> None:
    from fluxlite.cluster.formats import lines

    assert lines("a\x0cb\r\nc\u2028d\x85e\n\nf") == ["a\x0cb\r", "c\u2028d\x85e", "", "f"]
    g = parse("/bin/echo a\x0cb\u2028c\n", "l.in")
    assert [t.command for t in g.tasks.values()] == ["/bin/echo a\x0cb\u2028c"]  # for sh


def test_byte_order_mark_and_explicit_format() -> None:
    assert parse("\ufeffTASK a /bin/true\n", "b.dag").format == "pmc"
    assert parse('\ufeff[{"id": "a", "executable": "/bin/true"}]', "b.json").format == "json"
    g = parse("TASK a /bin/true\n", "x", "list")
    assert g.format == "list" and g.tasks["1"].argv == ["TASK", "a", "/bin/true"]
    with pytest.raises(ClusterInputError, match="U\\+FEFF"):
        parse("\ufeff\ufeffTASK a /bin/true\n", "b.dag")


def test_nul_byte_is_refused_with_its_line() -> None:
    with pytest.raises(ClusterInputError, match="n.dag:2: NUL byte"):
        parse("TASK a /bin/true\nTASK b /bin/tr\0ue\n", "n.dag")


def test_many_parents_parse_in_linear_time() -> None:
    import time

    n = 50_000
    text = "".join(f"TASK p{i} /bin/true\n" for i in range(n)) + "TASK c /bin/true\n"
    text += "".join(f"EDGE p{i} c\n" for i in range(n)) + "EDGE p0 c\n"  # a repeat counts once
    t0 = time.perf_counter()
    g = parse(text, "wide.dag")
    elapsed = time.perf_counter() - t0
    assert len(g.tasks["c"].parents) == n
    assert elapsed < 10, elapsed  # about 0.3 s; quadratic took minutes


def test_rescue_ids_round_trip() -> None:
    from fluxlite.cluster.scheduler import parse_rescue_line, rescue_id

    for tid in ["plain", "a b", "b\u2028c", "b\x0cc", "b\x85c", '"q"', "x\ny", "é", "t\tt"]:
        line = f"DONE {rescue_id(tid)}"
        assert "\n" not in line and "\u2028" not in line and "\x85" not in line
        assert parse_rescue_line(line) == tid
    assert rescue_id("plain") == "plain"  # PMC's own format for ordinary ids
    assert parse_rescue_line("DONE a b") is None and parse_rescue_line("# DONE a") is None


def test_cluster_line_values_cannot_make_keys_or_lines() -> None:
    from fluxlite.cluster.records import _q

    v = _q('x" status=0 ]- invocation: <invocation\r\n[cluster-summary %')
    assert v.count('"') == 2 and "=" not in v and "]" not in v and "[" not in v
    assert "- invocation:" not in v and "<invocation" not in v and "\r" not in v
    assert "%25" in v  # '%' itself is escaped: the encoding reads back


def test_input_errors_are_one_line_whatever_the_ids_and_names() -> None:
    doc = '[{"id": "a\\nb\\u2028", "executable": "/bin/true"}, {"id": "a\\nb\\u2028"}]'
    with pytest.raises(ClusterInputError) as err:
        parse(doc, "in\nput.json")
    text = str(err.value)
    assert text.isprintable() and "a\\nb\\u2028" in text and "in\\nput.json" in text


@pytest.mark.parametrize(("doc", "why"), [
    ('[{"id": "a", "executable": "/bin/true", "priority": ' + "9" * 5000 + "}]",
     "an integer with too many digits"),
    ('[{"id": "a", "executable": "/bin/true", "tries": NaN}]', "NaN is not a number JSON allows"),
    ('[{"id": "a", "id": "b", "executable": "/bin/true"}]', "duplicate key 'id' in an object"),
])
def test_json_the_parser_refuses_says_why(doc: str, why: str) -> None:
    with pytest.raises(ClusterInputError) as ei:
        parse(doc, "n.json")
    assert f"malformed JSON: {why}" in str(ei.value)
