"""Reading the YAML files users write (recipes, training configs, seed files): bounded loading, `--set`
overrides and the one formatter of pydantic validation errors.

Bounds on what a user's files may cost: YAML size and alias expansion, duplicate keys.

A 1 KB YAML file whose anchors nest nine deep expands to ~10^9 nodes once anything walks it (pydantic,
JSON dumps): PyYAML builds the shared objects cheaply, so the bound is checked on the composed node
graph, before anything expands it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from factory.core.errors import UserError

MAX_YAML_BYTES = 4 * 1024 * 1024  # recipes, training configs and seed files are small hand-written files
MAX_YAML_NODES = 1_000_000  # nodes after alias expansion: far above any real recipe or seed file


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and documents that expand past MAX_YAML_NODES."""

    def construct_document(self, node: Node) -> Any:
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise ConstructorError(
                None,
                None,
                f"expands to more than {MAX_YAML_NODES:,} values (aliases nested too deep)",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeConstructor reports it
                break
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """Values the node stands for once every alias is expanded (memoised: aliases share their node)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a recursive alias counts once; PyYAML builds it as a cycle, not an expansion
    if isinstance(node, SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_YAML_NODES + 1)  # stop the sum growing without bound
    return memo[id(node)]


def load_yaml(content: bytes | str, where: str) -> Any:
    """Parse one YAML document within the bounds above; any problem is one UserError naming the line."""
    size = len(content.encode() if isinstance(content, str) else content)
    if size > MAX_YAML_BYTES:
        raise UserError(f"file is {size:,} bytes; the limit is {MAX_YAML_BYTES:,}", where=where)
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"not a UTF-8 text file (byte {exc.start})", where=where) from None
    try:
        return yaml.load(content, Loader=BoundedLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{line}invalid YAML: {problem}", where=where) from None


def read_yaml(path: Path) -> Any:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=str(path)) from None
    return load_yaml(content, where=str(path))


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """`a.b.c=value`; value parsed as YAML; list items addressed by index or by their `name`."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects key.path=value, got {assignment!r}")
    try:
        value = yaml.load(raw, Loader=BoundedLoader) if raw else ""  # a SafeLoader with bounds
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, key)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping or list")


def _list_index(node: list[Any], part: str, key: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    for idx, item in enumerate(node):
        if isinstance(item, dict) and item.get("name", item.get("config")) == part:
            return idx
    raise UserError(f"--set {key}: no list item named or numbered {part!r}")


Location = tuple[int | str, ...]


def dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc)


def format_validation_error(exc: ValidationError, *, location: Callable[[Location], str] = dotted) -> str:
    """The first error in one line, `field.path: message (+N more)`; the message alone when it is about
    the whole object. Every user-facing validation message goes through here (recipes, training
    configs, seed files, CLI options, records, manifests). `location` names the place as the caller's
    user knows it (a stage by its name, a CLI option by its flag)."""
    errors = exc.errors()
    err = errors[0]
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location(err['loc'])}: {msg}{more}" if err["loc"] else f"{msg}{more}"
