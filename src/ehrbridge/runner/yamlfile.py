"""YAML read with the line of every key and item, so config errors can name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


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
    """Parse ``text``; a YAML syntax error raises ``yaml.YAMLError`` (it has its own mark)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    out = LocatedYaml(data=None)
    if node is None:
        return out
    out.lines[""] = node.start_mark.line + 1
    out.data = _plain(node, "", out)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _plain(node: yaml.Node, path: str, out: LocatedYaml) -> Any:
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            child = _join(path, key)
            line = key_node.start_mark.line + 1
            if key in mapping:
                out.problems.append((line, child, "duplicate key"))
            out.lines[child] = line
            mapping[key] = _plain(value_node, child, out)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            out.lines[child] = item.start_mark.line + 1
            items.append(_plain(item, child, out))
        return items
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return None
    return yaml.SafeLoader(node.value).construct_object(node, deep=True)
