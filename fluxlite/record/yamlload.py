"""Reading YAML that someone else wrote (a record, a task's ``files`` entries) in bounded
time and memory.

Records never use anchors, aliases or merge keys; a file that does is refused before any
object is built, so that a few hundred bytes of nested aliases (a "billion laughs") cannot
grow into gigabytes when what was read is walked or printed. Nesting is bounded by libyaml
(and, in the Python loader, by the recursion limit, which is turned into the same error).
"""

from __future__ import annotations


import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

# the C loader parses records several times faster than the Python one
_CLoader: Any = getattr(yaml, "CSafeLoader", None)
_MERGE = "tag:yaml.org,2002:merge"


class RefusedYAML(yaml.YAMLError):
    """YAML that a record never holds (an alias, a merge key, nesting without end)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    def __str__(self) -> str:
        return self.what


def _check(root: Node) -> None:
    """Every node once: a node reached twice is an alias (which PyYAML shares, not copies)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            raise RefusedYAML("YAML aliases are not allowed in a record")
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                if key.tag == _MERGE:
                    raise RefusedYAML("YAML merge keys are not allowed in a record")
                todo += (key, value)


def _load_with(loader_class: Any, text: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # an alias needs a "*"; a merge key "<<" or a tag that names "merge"
        if "*" in text or "<<" in text or "merge" in text:
            _check(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """One YAML document, as ``yaml.safe_load`` reads it, without aliases or merge keys;
    raises ``yaml.YAMLError`` (``RefusedYAML`` for what records never hold)."""
    try:
        if _CLoader is not None:
            try:
                return _load_with(_CLoader, text)
            except RefusedYAML:
                raise
            except yaml.YAMLError:
                # libyaml refuses the escape of a lone surrogate, which the writer uses for an
                # undecodable byte of a file name or an argument; Pegasus's parser (the
                # Python loader) reads it
                if "\\u" not in text and "\\U" not in text:
                    raise
        return _load_with(yaml.SafeLoader, text)
    except RecursionError:
        raise RefusedYAML("YAML nested too deeply") from None
