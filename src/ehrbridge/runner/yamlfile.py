"""YAML read with the line of every key and item, so config errors can name them.

Reading is bounded, so a hostile or broken file costs little and always ends in a located
:class:`YamlRefused` (never a hang, a ``RecursionError`` or a library error):

- at most :data:`MAX_CHARS` characters;
- nesting at most :data:`MAX_DEPTH` deep, checked on the parser's events before any tree is
  built (PyYAML's composer recurses once per level);
- at most :data:`MAX_ALIASES` aliases (``*name``), and at most :data:`MAX_VALUES` values once
  they are expanded, measured on the composed graph (where an alias is one shared node) before
  anything is expanded: nine anchors each aliasing the previous nine times (a "billion laughs")
  is refused after measuring ten nodes instead of expanding to 9⁹ values. An alias inside the
  value it names is refused there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

#: the largest config read (a large config is a few tens of kilobytes)
MAX_CHARS = 1_000_000
#: the deepest nesting read (a rest source's field transforms nest about ten deep)
MAX_DEPTH = 40
#: aliases (``*name``) in one file
MAX_ALIASES = 1_000
#: keys, items and values in the document once its aliases are expanded
MAX_VALUES = 100_000


class YamlRefused(Exception):
    """The text is not YAML this reader takes; says where and why, never the text itself."""

    def __init__(self, line: int, problem: str, path: str = "") -> None:
        #: the 1-based line, and the key path when there is one
        self.line, self.path, self.problem = line, path, problem
        super().__init__(f"{line}: {path + ': ' if path else ''}{problem}")


@dataclass(kw_only=True)
class LocatedYaml:
    """A YAML document as plain data, and the line where each key path starts."""

    data: Any
    #: key path (``data_sources[1].auth.token``) -> 1-based line
    lines: dict[str, int] = field(default_factory=dict)
    #: problems found while reading: (line, key path, problem)
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def line(self, path: str) -> int:
        """The line of ``path``, or of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("", 1)


def read_yaml(text: str) -> LocatedYaml:
    """Parse ``text`` within the bounds above; a :class:`YamlRefused` says where it cannot."""
    if len(text) > MAX_CHARS:
        raise YamlRefused(1, f"the file is larger than {MAX_CHARS:,} characters")
    try:
        _check_shape(yaml.parse(text, Loader=yaml.SafeLoader))
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlRefused(
            mark.line + 1 if mark is not None else 1, exc.problem or "not valid YAML"
        ) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (a control character, a lone surrogate): say where,
        # not which, since it may be part of a value.
        raise YamlRefused(
            text.count("\n", 0, exc.position) + 1, "a character that YAML does not allow"
        ) from None
    except yaml.YAMLError:
        raise YamlRefused(1, "not valid YAML") from None
    out = LocatedYaml(data=None)
    if node is None:
        return out
    _measure(node)
    out.lines[""] = node.start_mark.line + 1
    out.data = _Builder(out).plain(node, "")
    return out


def _check_shape(events: Iterator[yaml.Event]) -> None:
    """Refuse nesting and aliases beyond the bounds while parsing, before a tree exists."""
    depth = aliases = 0
    for event in events:
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(line, f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlRefused(line, f"more than {MAX_ALIASES} aliases")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _measure(root: yaml.Node) -> None:
    """Refuse a document that would expand past :data:`MAX_VALUES` values or :data:`MAX_DEPTH`
    levels, or that contains itself, before expanding anything.

    An alias is the anchor's node object again, so the document is a graph: each distinct node
    is measured once (its expanded size and height from its children's), without recursion.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    #: nodes being measured: the ancestors of the node taken from the stack
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key, line = id(node), node.start_mark.line + 1
        if children_done:
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            height[key] = 1 + max((height[id(child)] for child in children), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_VALUES:
                raise YamlRefused(
                    line, f"more than {MAX_VALUES:,} values once its aliases are expanded"
                )
            if height[key] > MAX_DEPTH + 1:  # a collection of scalars is two high
                raise YamlRefused(line, f"nested more than {MAX_DEPTH} levels deep through aliases")
        elif key in open_nodes:
            raise YamlRefused(line, "an alias inside the value it names")
        elif key not in size:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Builder:
    """Turns composed nodes into plain data (:func:`_measure` has bounded the work)."""

    def __init__(self, out: LocatedYaml) -> None:
        self.out = out
        self.constructor = SafeConstructor()

    def plain(self, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                raw = self.scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if raw is None or isinstance(raw, list | dict):
                    self.out.problems.append((key_line, path, "a key must be a plain word"))
                    continue
                key = str(raw)
                child = _join(path, key)
                if key in mapping:
                    self.out.problems.append((key_line, child, "duplicate key"))
                self.out.lines[child] = key_line
                mapping[key] = self.plain(value_node, child)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                child = f"{path}[{index}]"
                self.out.lines[child] = item.start_mark.line + 1
                items.append(self.plain(item, child))
            return items
        return self.scalar(node, path)

    def scalar(self, node: yaml.Node, path: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, KeyError):
            # e.g. ``!!int abc``, ``!!timestamp soon``, ``!!bool maybe``, an integer of 5,000
            # digits, bad base64
            line = node.start_mark.line + 1
            self.out.problems.append((line, path, "a value that cannot be read as its YAML type"))
            return None
