"""The JSON Schema of job.json, generated from the validator's field table.

``python -m fluxlite.schema`` rewrites the shipped ``job.schema.json``; a test checks that
the shipped file is what the table generates, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path

from fluxlite.numbers import DURATION_MAX_TEXT, DURATION_PATTERN
from fluxlite.spec import SHA256_RE, RESERVED_DIR, SECTIONS, SPEC_VERSION, Field

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

SHIPPED = Path(__file__).with_name("job.schema.json")

_LFN_NOT = {"anyOf": [{"pattern": "^/"}, {"pattern": "(^|/)\\.\\.(/|$)"}, {"pattern": "/$"},
                      {"pattern": f"^(\\./)*{RESERVED_DIR.replace('.', '[.]')}(/|$)"},
                      {"pattern": "\u0000"}]}
# What the table cannot say of a whole section.
_SECTION_EXTRA: dict[str, dict[str, Any]] = {
    "executable": {"anyOf": [{"required": ["url"]}, {"required": ["urls"]}]},
    "container_image": {"oneOf": [{"required": ["url"]}, {"required": ["urls"]}]},
}


def build() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of job.json."""
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://fluxlite.invalid/schema/job-v{SPEC_VERSION}.json",
        "title": f"fluxlite job description, version {SPEC_VERSION}",
    }
    out.update(_section(""))
    return out


def _section(name: str) -> dict[str, Any]:
    table = SECTIONS[name]
    obj: dict[str, Any] = {"type": "object"}
    required = [k for k, f in table.items() if f.required]
    if required:
        obj["required"] = required
    obj["additionalProperties"] = False
    obj["patternProperties"] = {"^x-": {}}
    obj["properties"] = {k: _field(f) for k, f in table.items()}
    obj.update(_SECTION_EXTRA.get(name, {}))
    return obj


def _field(f: Field) -> dict[str, Any]:
    s = _shape(f)
    if not f.required and f.kind != "const" and not _accepts_null(s):
        s = {"anyOf": [{"type": "null"}, s]}
    if f.default is not None:
        s["default"] = f.default
    if f.doc:
        s["description"] = f.doc
    return s


def _shape(f: Field) -> dict[str, Any]:
    k = f.kind
    if k == "const":
        return {"const": f.options[0]}
    if k == "text":
        return {"type": "string", "not": {"pattern": "\u0000"}}
    if k in ("string", "path", "record"):
        return {"type": "string", "minLength": 1, "not": {"pattern": "\u0000"}}
    if k == "lfn":
        return {"type": "string", "minLength": 1, "not": _LFN_NOT,
                "description": "a name relative to the worker directory; no absolute paths, "
                               f"no '..', not in {RESERVED_DIR}/, no trailing '/'"}
    if k == "sha256":
        return {"type": "string", "pattern": SHA256_RE.pattern}
    if k == "boolean":
        return {"type": "boolean"}
    if k == "enum":
        return {"enum": list(f.options)}
    if k in ("integer", "number"):
        return _bounds({"type": k}, f)
    if k == "duration":
        return {"anyOf": [_bounds({"type": "number"}, f),
                          {"type": "string", "pattern": DURATION_PATTERN,
                           "maxLength": DURATION_MAX_TEXT, "not": {"pattern": "\n"}}]}
    if k == "object":
        return _section(f.section)
    if k == "list":
        assert f.items is not None
        arr: dict[str, Any] = {"type": "array", "items": _shape(f.items)}
        if f.required:
            arr["minItems"] = 1
        return arr
    if k == "custom":
        assert f.schema is not None
        return _expand(f.schema)
    raise ValueError(f"field kind '{k}' has no schema")


def _bounds(s: dict[str, Any], f: Field) -> dict[str, Any]:
    s["exclusiveMinimum" if f.exclusive_minimum else "minimum"] = _num(f.minimum)
    s["maximum"] = _num(f.maximum)
    return s


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _expand(node: Any) -> Any:
    """A custom schema with its ``{"$section": name}`` nodes replaced by the section."""
    if isinstance(node, dict):
        if set(node) == {"$section"}:
            return _section(node["$section"])
        return {k: _expand(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v) for v in node]
    return node


def _accepts_null(s: dict[str, Any]) -> bool:
    t = s.get("type")
    return t == "null" or (isinstance(t, list) and "null" in t)


def render() -> str:
    """The JSON Schema of job.json, as the shipped file holds it."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
