"""The knobs of the synthetic world checked: a knob is a field of
:class:`~newsrec.data.synthetic_world.SyntheticConfig`, its value of the field's annotated type.
The check is generic over the config's fields and their annotations (``int``, ``float``,
``str``, ``bool``, fixed-length ``tuple[...]``, unions), so a knob added to the config is
checked with no more code; its range by the config's own ``__post_init__`` (a config built with
the knob alone), before any world is generated."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import fields

from newsrec.data.synthetic_world import SyntheticConfig

__all__ = ["check_knob", "check_knobs", "knob_names"]


def knob_names() -> list[str]:
    """The knobs of the synthetic world: the fields of :class:`SyntheticConfig`, in order."""
    return [f.name for f in fields(SyntheticConfig)]


def _describe(hint) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(hint, value):
    """``value`` as the type ``hint`` names (an int for a whole float, a tuple for a list), or
    raise ``TypeError``; types this does not know are passed through as they are."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return value  # an int stays an int: the world's recorded config (and bytes) as before
    elif hint is str and isinstance(value, str):
        return value
    elif origin is tuple and isinstance(value, (list, tuple)) and (Ellipsis in args or len(value) == len(args)):
        return type(value)(_coerce(args[0] if Ellipsis in args else a, v) for a, v in zip(args * len(value), value))
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _coerce(a, value)
            except TypeError:
                continue
    elif hint in (bool, int, float, str) or origin in (tuple, typing.Union, types.UnionType):
        pass
    else:
        return value
    raise TypeError(hint)


def check_knob(name: str, value, reserved: tuple[str, ...] = ()) -> object:
    """``value`` of the knob ``name`` as its :class:`SyntheticConfig` field's type; an unknown
    knob, one in ``reserved`` (set by its own argument) or a value of the wrong type is one
    ``ValueError`` naming the knob and the valid names, and a value out of the field's range is
    the config's own ``ValueError``. Generic over the config's fields and their annotations, so a
    knob added to the config is checked without more code."""
    names = knob_names()
    if name not in names or name in reserved:
        valid = ", ".join(n for n in names if n not in reserved)
        why = "is set by its own argument" if name in reserved else "is not a knob of the synthetic world"
        raise ValueError(f"{name!r} {why}; the knobs are: {valid}")
    hint = typing.get_type_hints(SyntheticConfig)[name]
    try:
        value = _coerce(hint, value)
    except TypeError:
        raise ValueError(f"knob {name}: expected {_describe(hint)}, got {value!r}") from None
    SyntheticConfig(**{name: value})  # its range: the config's own check, one ValueError naming it
    return value


def check_knobs(knobs, reserved: tuple[str, ...] = ()) -> dict:
    """:func:`check_knob` for every item of the mapping ``knobs`` (anything else is one
    ``ValueError``); the checked values by name."""
    if not isinstance(knobs, Mapping):
        raise ValueError(
            'knobs must be an object of SyntheticConfig fields such as {"transition_strength": 0}, '
            f"got {type(knobs).__name__} {knobs!r:.60}"
        )
    return {str(k): check_knob(str(k), v, reserved) for k, v in knobs.items()}
