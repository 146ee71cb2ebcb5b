"""Targeted edits of a hand-written TOML file that keep every other byte: comments, layout, order, inline tables.

``calibrate`` owns two things in ``model.toml``: the ``[calibration]`` table and ``[samplers.drs] logit_max``.
:func:`replace_table` and :func:`set_value` change exactly those lines of the text. A small scanner finds the
statements (table headers and ``key = value`` lines, multi-line arrays and strings included); keys and headers are
parsed by ``tomllib`` itself. A layout these functions do not edit (the table written as an inline table or with
dotted keys, an array of tables of that name) raises :class:`TomlEditError`; the caller re-parses every result and
compares it with the data it meant to write, so a wrong edit is never kept.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import tomli_w

Kind = Literal["header", "array_header", "keyvalue"]


class TomlEditError(ValueError):
    """The text cannot be edited in place (an unsupported layout, or text that is not valid TOML)."""


class Statement(NamedTuple):
    """One TOML statement. ``start``/``end``: offsets of its whole physical lines (``end`` after the newline).

    path:  the table path of a header, or the dotted key of a ``key = value`` (relative to its table).
    value: (start, end) offsets of the value text of a ``key = value``, without trailing blanks and comment.
    """

    kind: Kind
    start: int
    end: int
    path: tuple[str, ...]
    value: tuple[int, int] | None = None


def _path(data: Any) -> tuple[str, ...]:
    """The keys of a one-path document such as ``{"a": {"b": {}}}`` -> ("a", "b")."""
    keys: list[str] = []
    while isinstance(data, dict) and len(data) == 1:
        key = next(iter(data))
        keys.append(key)
        data = data[key]
    return tuple(keys)


class _Scanner:
    """Splits TOML text into statements. Only what delimits statements is tracked: strings, brackets, comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def _peek(self, s: str) -> bool:
        return self.text.startswith(s, self.i)

    def _line_end(self) -> int:
        j = self.text.find("\n", self.i)
        return len(self.text) if j < 0 else j + 1

    def _skip_string(self) -> None:
        """Past the string starting at ``self.i`` (basic, literal, or their multi-line forms)."""
        t = self.text
        for quote in ('"""', "'''", '"', "'"):
            if self._peek(quote):
                break
        self.i += len(quote)
        escapes = quote[0] == '"'
        while self.i < len(t):
            if escapes and t[self.i] == "\\":
                self.i += 2
                continue
            if self._peek(quote):
                self.i += len(quote)
                while len(quote) == 3 and self.i < len(t) and t[self.i] == quote[0]:
                    self.i += 1  # up to two quotes may end a multi-line string's content
                return
            if len(quote) == 1 and t[self.i] == "\n":
                raise TomlEditError("newline in a single-line string")
            self.i += 1
        raise TomlEditError("unterminated string")

    def _skip_until(self, stops: str) -> None:
        """Past quoted text, up to the first character in ``stops`` outside strings."""
        while self.i < len(self.text) and self.text[self.i] not in stops:
            if self.text[self.i] in "\"'":
                self._skip_string()
            else:
                self.i += 1

    def _value_end(self) -> int:
        """Past a value (arrays may span lines and hold comments); returns the end of its text."""
        t, depth = self.text, 0
        while self.i < len(t):
            c = t[self.i]
            if c in "\"'":
                self._skip_string()
                continue
            if c == "#":
                if depth == 0:
                    break
                self.i = self._line_end() - 1
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
            elif c == "\n" and depth == 0:
                break
            self.i += 1
        end = self.i
        while end > 0 and t[end - 1] in " \t\r":
            end -= 1
        return end

    def statements(self) -> list[Statement]:
        t, out = self.text, []
        while self.i < len(t):
            line_start = self.i
            while self.i < len(t) and t[self.i] in " \t\r\n":
                if t[self.i] == "\n":
                    line_start = self.i + 1
                self.i += 1
            if self.i >= len(t):
                break
            if t[self.i] == "#":
                self.i = self._line_end()
                continue
            if t[self.i] == "[":
                kind: Kind = "array_header" if self._peek("[[") else "header"
                head = self.i
                self.i += 1
                self._skip_until("]\n")
                self.i += 2 if kind == "array_header" else 1
                path = _path(_loads(t[head : self.i], "table header"))
                self.i = self._line_end()
                out.append(Statement(kind, line_start, self.i, path))
                continue
            key_start = self.i
            self._skip_until("=\n")
            if not self._peek("="):
                raise TomlEditError(f"expected '=' after key {t[key_start:self.i].strip()!r}")
            path = _path(_loads(t[key_start : self.i] + "= 0", "key"))
            self.i += 1
            while self.i < len(t) and t[self.i] in " \t":
                self.i += 1
            value_start = self.i
            value_end = self._value_end()
            self.i = self._line_end()
            out.append(Statement("keyvalue", line_start, self.i, path, (value_start, value_end)))
        return out


def _loads(text: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlEditError(f"cannot parse {what} {text.strip()!r}: {exc}") from None


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _format(values: Mapping[str, Any], newline: str) -> str:
    """``key = value`` lines for a flat table, in tomli_w's formatting (exact float round trip)."""
    return tomli_w.dumps(dict(values)).replace("\n", newline)


class _Table(NamedTuple):
    """A table's header and the ``key = value`` statements in its body (``header`` None: not a header table)."""

    header: Statement | None
    body: list[Statement]


def _find_table(text: str, table: tuple[str, ...]) -> _Table:
    """The ``[table]`` header and its body; refuses a table defined in any other way."""
    statements = _Scanner(text).statements()
    current: tuple[str, ...] = ()
    header: Statement | None = None
    body: list[Statement] = []
    for st in statements:
        if st.kind != "keyvalue":
            current = st.path
            again = st.path == table and header is not None
            if st.path[: len(table)] == table and (st.kind == "array_header" or again):
                raise TomlEditError(f"[{'.'.join(table)}] is defined more than once, or as an array of tables")
            if st.path == table:
                header = st
            continue
        full = current + st.path
        if current == table and header is not None:
            body.append(st)
        elif full[: len(table)] == table or table[: len(full)] == full:
            raise TomlEditError(
                f"{'.'.join(table)} is written with dotted keys or as an inline table ({'.'.join(full)}): "
                f"only a [{'.'.join(table)}] header is edited in place"
            )
    return _Table(header, body)


def _append_table(text: str, table: tuple[str, ...], lines: str) -> str:
    """``text`` with ``[table]`` and its ``lines`` added at the end, after one blank line."""
    newline = _newline(text)
    name = ".".join(tomli_w.dumps({key: 0}).split(" = ")[0] for key in table)  # quoted as tomli_w quotes keys
    sep = "" if not text or text.endswith("\n") else newline
    gap = newline if text.strip() else ""
    return f"{text}{sep}{gap}[{name}]{newline}{lines}"


def _insert_at(text: str, at: int, lines: str) -> str:
    """``lines`` inserted at offset ``at`` (a line start, or the end of a text without a final newline)."""
    sep = "" if at == 0 or text[:at].endswith("\n") else _newline(text)
    return text[:at] + sep + lines + text[at:]


def replace_table(text: str, table: tuple[str, ...], values: Mapping[str, Any]) -> str:
    """``text`` with the body of ``[table]`` replaced by ``values`` (a flat table), or the table appended.

    Comment and blank lines before the first and after the last of the old keys stay; comments between old keys go
    with them. Everything outside the table is unchanged.
    """
    found = _find_table(text, table)
    lines = _format(values, _newline(text))
    if found.header is None:
        return _append_table(text, table, lines)
    if not found.body:
        return _insert_at(text, found.header.end, lines)
    return text[: found.body[0].start] + lines + text[found.body[-1].end :]


def set_value(text: str, table: tuple[str, ...], key: str, value: Any) -> str:
    """``text`` with ``key = value`` in ``[table]``: the value text replaced in place (a trailing comment stays),
    the line added after the table's last key, or the table appended with it."""
    found = _find_table(text, table)
    newline = _newline(text)
    line = _format({key: value}, newline)
    if found.header is None:
        return _append_table(text, table, line)
    for st in found.body:
        if st.path == (key,) and st.value is not None:
            new_value = line.split(" = ", 1)[1].rstrip("\r\n")
            return text[: st.value[0]] + new_value + text[st.value[1] :]
    return _insert_at(text, found.body[-1].end if found.body else found.header.end, line)
