"""Bounds on what a user's files may cost: YAML size and alias expansion, duplicate keys, prompt size.

A 1 KB YAML file whose anchors nest nine deep expands to ~10^9 nodes once anything walks it (pydantic,
JSON dumps): PyYAML builds the shared objects cheaply, so the bound is checked on the composed node
graph, before anything expands it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from factory.errors import UserError

if TYPE_CHECKING:
    from factory.backends.base import Backend, ChatRequest, Completion

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


class PromptCapped:
    """A backend that refuses, as a failed completion (the row is quarantined), any request whose
    messages hold more than `limit` characters, instead of sending a 50 MB prompt to a server."""

    def __init__(self, backend: Backend, limit: int) -> None:
        self._inner = backend
        self._limit = limit

    def __getattr__(self, name: str) -> Any:  # model_id, revision, unavailable(), ...
        return getattr(self._inner, name)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        from factory.backends.base import failed

        sizes = [sum(len(str(m.get("content", ""))) for m in r.messages) for r in requests]
        fitting = [i for i, size in enumerate(sizes) if size <= self._limit]
        answers = iter(self._inner.generate([requests[i] for i in fitting]) if fitting else [])
        return [
            next(answers)
            if size <= self._limit
            else failed(f"the prompt has {size:,} characters; max_prompt_chars is {self._limit:,}")
            for size in sizes
        ]

    def close(self) -> None:
        self._inner.close()
