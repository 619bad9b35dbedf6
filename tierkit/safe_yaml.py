"""Reading YAML that may be hostile: a size cap, UTF-8 only, and a loader that cannot be made to blow up.

`read_text(path)` reads at most `MAX_BYTES` of a regular file as UTF-8 (a byte-order mark is
fine). `load(text, source)` parses with PyYAML's safe loader plus four limits: a key given twice
in one mapping is an error (YAML says keys are unique; PyYAML lets the last one win), nesting
deeper than `MAX_DEPTH` is refused while composing (before Python's recursion limit), the
document may expand to at most `MAX_NODES` nodes once every alias is counted as the tree it
stands for (a "billion laughs" bomb of a few hundred bytes is refused in microseconds, the
count memoised per node), and an integer may have at most `MAX_INT_CHARS` characters. Every
problem is one `TierkitError` line naming the file, line and column, quoting at most `excerpt`.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tierkit.errors import TierkitError

MAX_BYTES = 1 << 20  # a stack file is a few KiB; 1 MiB leaves room for comments and variants
MAX_DEPTH = 32  # the spec nests 4 levels; Pulumi.yaml a few more
MAX_NODES = 20_000  # nodes after alias expansion (the shipped stacks have under 100)
MAX_INT_CHARS = 32  # Python refuses int() of over 4,300 digits; no spec number needs 32
EXCERPT_CHARS = 40


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped rendering of a user's value for an error line: never long, never multi-line."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, (list, tuple, set)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, str):
        text = repr(value[:limit])
        return text + f"... ({len(value)} characters)" if len(value) > limit else text
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {len(str(abs(value)))}-digit integer"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _plain(text: str, limit: int = 80) -> str:
    """`text` on one line, control characters escaped, at most `limit` characters."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def read_text(path: Path, *, limit: int = MAX_BYTES, kind: str = "stack file (Pulumi.<stack>.yaml)") -> str:
    """The file's text: a regular file of at most `limit` bytes, UTF-8 (BOM allowed).

    FileNotFoundError passes through (callers name the fix); every other problem is one line
    that names the file `kind` expected."""
    return decode(read_bytes(path, limit=limit, kind=kind), str(path))


def read_bytes(path: Path, *, limit: int = MAX_BYTES, kind: str = "stack file (Pulumi.<stack>.yaml)") -> bytes:
    """`read_text`'s checks (a regular file of at most `limit` bytes), without decoding."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TierkitError(f"{path}: cannot read ({exc.strerror}); check the path and permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise TierkitError(f"{path}: is a directory; give a {kind}")
    if not stat.S_ISREG(st.st_mode):
        raise TierkitError(f"{path}: not a regular file; give a {kind}")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # the size may change under us: never trust st_size alone
    except OSError as exc:
        raise TierkitError(f"{path}: cannot read ({exc.strerror}); check the path and permissions") from None
    if len(data) > limit:
        raise TierkitError(f"{path}: larger than {limit // 1024} KiB; give a {kind}")
    return data


def decode(data: bytes, source: str) -> str:
    """UTF-8 text (a UTF-8 BOM is dropped), or one line saying where the first bad byte is."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TierkitError(f"{source}: UTF-16 text; save the file as UTF-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TierkitError(
            f"{source}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit, unique keys and short integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels; a stack file needs a few", self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise _Refused(f"key {excerpt(key)} is given twice in this mapping (first on line "
                               f"{seen[key].start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:  # type: ignore[override]
        text = str(node.value)
        if len(text) > MAX_INT_CHARS:
            raise _Refused(f"an integer of {len(text)} characters; no setting needs more than {MAX_INT_CHARS}", node.start_mark)
        return super().construct_yaml_int(node)  # type: ignore[no-any-return]


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _measure(node: Node, memo: dict[int, tuple[int, int]], active: set[int], depth: int) -> tuple[int, int]:
    """(nodes, height) of the tree `node` stands for with every alias expanded; refuses bombs."""
    key = id(node)
    if key in active:
        raise _Refused("an alias refers to the mapping or list that contains it; remove the cycle", node.start_mark)
    if key in memo:
        size, height = memo[key]
    else:
        active.add(key)
        size, height = 1, 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            n, h = _measure(child, memo, active, depth + 1)
            size += n
            height = max(height, h + 1)
            if size > MAX_NODES:
                raise _Refused(f"expands to more than {MAX_NODES:,} values through aliases (&anchor / *alias); "
                               f"write the spec out plainly", node.start_mark)
        active.discard(key)
        memo[key] = (size, height)
    if depth + height > MAX_DEPTH + 1:
        raise _Refused(f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded; write the spec out plainly",
                       node.start_mark)
    return size, height


def load(text: str, source: str) -> Any:
    """The YAML document in `text` (None when empty), or one `source:line:col:` error line."""
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:  # raised before parsing starts: a control character
        line = text.count("\n", 0, exc.position) + 1
        raise TierkitError(f"{source}:{line}: character #x{exc.character:04x} is not allowed in YAML; remove it "
                           f"(or save the file as UTF-8 if it is another encoding)") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, {}, set(), 0)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, _Refused):
            raise TierkitError(f"{source}{where}: {what}") from None
        if isinstance(exc, yaml.reader.ReaderError):
            raise TierkitError(f"{source}: character #x{exc.character:04x} is not allowed in YAML; remove it") from None
        kind = "unsupported YAML" if isinstance(exc, ConstructorError) else "YAML syntax error"
        raise TierkitError(f"{source}{where}: {kind} ({_plain(what)}); fix the syntax") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """`load(read_text(path))`."""
    return load(read_text(path), str(path))
