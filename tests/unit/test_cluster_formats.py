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
