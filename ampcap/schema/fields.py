"""Reading a manifest's fields: one place that checks every field's type and every path.

The manifests (``session.json``, ``aligned/alignment.json``, a dataset's ``manifest.json``,
``run.json``) are read by :func:`build`, which walks a frozen dataclass's type hints over the
JSON document: a missing field, a value of the wrong type, or a file path that would lead out
of the manifest's folder raises the schema's error with a message that names the file and the
field (``takes[2].file``), never a Python repr. Unknown keys are ignored, so a manifest with a
field a later ampcap added still reads.

A dataclass field holds a path when its metadata says so (``field(metadata=PATH)``): a path
relative to ``root``, with no ``..``, not absolute, and not a symbolic link that resolves
outside ``root``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from ampcap.errors import AmpcapError

#: Metadata of a dataclass field that names a file inside the manifest's folder.
PATH = {"path": True}

T = TypeVar("T")


class _Damaged(Exception):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(problem)
        self.field_name = field_name
        self.problem = problem


def _join(parent: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


def _describe(value: Any) -> str:
    kind = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = repr(value) if isinstance(value, (bool, int, float, str)) else kind
    if len(text) > 40:
        text = text[:37] + "..."
    return text if text == kind else f"{kind} ({text})"


def _check_relative_path(value: str, root: Path | None, name: str) -> None:
    """Refuse a manifest path that is absolute, climbs with ``..``, or resolves outside ``root``.

    Raises ``_Damaged``, which :func:`build` turns into the schema's error.
    """
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if "\x00" in value:
        raise _Damaged(name, f"is {value!r}, which holds a NUL character and names no file")
    if len(value.encode()) > 1024 or any(len(part.encode()) > 255 for part in posix.parts):
        raise _Damaged(name, f"is {value[:40]!r}..., too long to name a file")
    if not value or posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise _Damaged(name, f"is {value!r}, which is not a path inside the folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise _Damaged(name, f"is {value!r}, which leads out of the folder")
    if root is not None:
        try:
            base, target = root.resolve(), (root / value).resolve()
        except (OSError, RuntimeError) as exc:  # a loop of links, a name too long...
            raise _Damaged(name, f"is {value!r}, which cannot be followed ({exc})") from None
        if target != base and base not in target.parents:
            raise _Damaged(name, f"is {value!r}, a link that leads out of the folder (to {target})")


def _convert(value: Any, hint: Any, name: str, root: Path | None, is_path: bool) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        rest = [o for o in options if o is not type(None)]
        if len(rest) == 1:
            return _convert(value, rest[0], name, root, is_path)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Damaged(name, f"should be a number, not {_describe(value)}")
        if not math.isfinite(value):
            raise _Damaged(name, f"should be a finite number, not {value}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Damaged(name, f"should be a whole number, not {_describe(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _Damaged(name, f"should be text, not {_describe(value)}")
        if is_path and value:
            _check_relative_path(value, root, name)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _Damaged(name, f"should be true or false, not {_describe(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name, root)
    if origin is tuple or origin is list:
        if not isinstance(value, list):
            raise _Damaged(name, f"should be a list, not {_describe(value)}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        items = [_convert(v, item, _join(name, i), root, is_path) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Damaged(name, f"should be an object, not {_describe(value)}")
        args = typing.get_args(hint)
        item = args[1] if len(args) == 2 else Any
        return {
            str(k): _convert(v, item, _join(name, str(k)), root, is_path) for k, v in value.items()
        }
    return value


def _build(cls: type[T], data: Any, name: str, root: Path | None) -> T:
    if not isinstance(data, dict):
        raise _Damaged(name or "the document", f"should be an object, not {_describe(data)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        field_name = _join(name, spec.name)
        if spec.name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise _Damaged(field_name, "is missing")
            continue
        values[spec.name] = _convert(
            data[spec.name], hints[spec.name], field_name, root, bool(spec.metadata.get("path"))
        )
    return cls(**values)


def build(
    cls: type[T],
    data: Any,
    where: str | Path,
    error: type[AmpcapError],
    advice: str,
    root: Path | None = None,
    prefix: str = "",
) -> T:
    """The dataclass ``cls`` read from the JSON document ``data``, every field checked.

    Parameters
    ----------
    cls : dataclass type
        Nested dataclasses, ``tuple[X, ...]``, ``dict[str, X]``, ``X | None``, int, float, str
        and bool are read by their type hints; ``Any`` is taken as it is.
    data : object
        What ``json.loads`` returned.
    where : str or Path
        The manifest's path, named in every message.
    error : type of AmpcapError
        The schema's error (``SessionError``, ``DatasetError``...).
    advice : str
        What to do, appended to every message ("Run `ampcap align` again.").
    root : Path, optional
        The folder the manifest's paths are relative to; without it paths are checked in form
        only (not absolute, no ``..``).
    prefix : str, optional
        Where ``data`` sits in the manifest (``session_checks``), for the messages.

    Raises
    ------
    error
        Naming ``where`` and the field: missing, wrong type, or a path outside ``root``.
    """
    try:
        return _build(cls, data, prefix, None if root is None else Path(root))
    except _Damaged as exc:
        raise error(f"{where} is damaged: {exc.field_name} {exc.problem}. {advice}") from None


def expect(
    data: Any, name: str, hint: Any, where: str | Path, error: type[AmpcapError], advice: str
) -> Any:
    """One field of ``data`` read and checked like :func:`build` does (e.g. the schema version)."""
    try:
        if not isinstance(data, dict):
            raise _Damaged("the document", f"should be an object, not {_describe(data)}")
        if name not in data:
            raise _Damaged(name, "is missing")
        return _convert(data[name], hint, name, None, False)
    except _Damaged as exc:
        raise error(f"{where} is damaged: {exc.field_name} {exc.problem}. {advice}") from None


def expect_version(
    data: Any,
    version: int,
    where: str | Path,
    error: type[AmpcapError],
    advice: str,
    remedy: str,
) -> None:
    """Refuse a document without ``schema_version`` or of another version than ``version``;
    ``remedy`` is the sentence that says how to get one this ampcap reads."""
    found = expect(data, "schema_version", int, where, error, advice)
    if found != version:
        raise error(f"{where} has schema version {found}; this ampcap reads {version}. {remedy}")
