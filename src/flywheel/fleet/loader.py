"""Reading ``fleet.yaml``: YAML syntax, the models' shapes and the cross-field rules, every
error as ``FILE:LINE: FIELD: MESSAGE`` so an editor can jump to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from flywheel.errors import Invalid
from flywheel.fleet.rules import problems
from flywheel.fleet.scalesets import Path as FieldPath
from flywheel.fleet.spec import Fleet

if TYPE_CHECKING:
    from ruamel.yaml import YAML

# ruamel.yaml is imported where a spec is parsed: ~1 MiB per server process, for fleet work only.


class SpecError(Invalid):
    """One or more problems in a fleet spec, each already formatted with file and line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    fleet: Fleet
    document: Any     # the round-trip document, for locating fields later


def field_name(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def line_of(document: Any, path: FieldPath) -> int:
    """The 1-based line of the deepest node along ``path`` that the document has: the key's
    line for a mapping entry, the item's line for a list item."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    line = 0
    node = document
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0]
        else:
            break
        node = node[part]
    return line + 1


def yaml_parser() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML()   # round-trip: keeps comments and order, and knows every node's line
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    return yaml


def parse_document(path: Path, text: str) -> Any:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return yaml_parser().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = e.problem or e.context or "invalid YAML"
        raise SpecError([f"{path}:{line}: YAML syntax error: {what}"]) from None
    except YAMLError as e:
        raise SpecError([f"{path}:1: YAML syntax error: {e}"]) from None


def plain(node: Any) -> Any:
    """The round-trip document as plain dicts, lists and scalars (ruamel's keep quoting and
    formatting in subclasses that nothing downstream should see)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _message(error: Any) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    return msg.removeprefix("Value error, ")


def load(path: Path) -> LoadedSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError([f"{path}: cannot read: {e.strerror or e}"]) from None
    return load_text(path, text)


def load_text(path: Path, text: str) -> LoadedSpec:
    """``text`` as the spec ``path`` would hold (errors name ``path``)."""
    from ruamel.yaml.comments import CommentedMap

    document = parse_document(path, text)
    if not isinstance(document, CommentedMap):
        raise SpecError([f"{path}:1: the fleet spec must be a mapping (name:, github:, pools:)"])
    try:
        fleet = Fleet.model_validate(plain(document))
    except ValidationError as e:
        raise SpecError([
            f"{path}:{line_of(document, tuple(err['loc']))}: "
            f"{field_name(tuple(err['loc'])) or '(top level)'}: {_message(err)}"
            for err in e.errors()]) from None
    found = problems(fleet)
    if found:
        raise SpecError([f"{path}:{line_of(document, p.path)}: {field_name(p.path)}: {p.message}"
                         for p in found])
    return LoadedSpec(path, fleet, document)
