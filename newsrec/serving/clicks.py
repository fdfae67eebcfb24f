"""What a served click is: its time (ISO 8601 in, float seconds since the Unix epoch stored),
the checks a list of clicks passes before anything is stored, and the periods and durations the
service's options take."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from newsrec.serving.index import check_text

__all__ = [
    "FUTURE_TOLERANCE",
    "MIN_INTERVAL",
    "checked_clicks",
    "checked_interval",
    "parse_duration",
    "parse_time",
    "store_options",
]

#: how far (seconds) a click may be dated after the server's clock: later clicks are refused, and
#: a stored one (from an older store) counts as a click at the clock plus this much
FUTURE_TOLERANCE = 300.0

#: the shortest polling period (seconds) of ``follow_seconds`` / ``entity_refresh_seconds``
MIN_INTERVAL = 0.1


def checked_interval(value: float | None, name: str, *, none_ok: bool = True) -> float | None:
    """``value`` as float seconds if it is ``None`` (when ``none_ok``), 0 (off) or a finite number
    of at least :data:`MIN_INTERVAL`; anything else (negative, NaN, infinite, not a number) is one
    ``ValueError`` naming ``name``: a period like that would spin a core."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (seconds == 0 or (math.isfinite(seconds) and seconds >= MIN_INTERVAL)):
        raise ValueError(f"{name} must be 0 (off) or a finite number of seconds >= {MIN_INTERVAL}, got {value!r}")
    return seconds


def parse_time(value: str | float | int | datetime, what: str = "time") -> float:
    """Seconds since the Unix epoch (UTC) of an ISO 8601 time (``"2019-11-15T08:00:00Z"``; a
    time without a zone is UTC), a ``datetime`` or a number of seconds. Anything else, or a
    time that is not finite, is one ``ValueError`` naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected an ISO 8601 time such as '2019-11-15T08:00:00Z', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, datetime):
        seconds = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 time such as '2019-11-15T08:00:00Z'") from None
        seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise ValueError(f"{what}: expected an ISO 8601 time string, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"{what}: {value!r} is not a finite time")
    return seconds


def parse_duration(value: str | float) -> float:
    """Seconds in ``"6h"``, ``"30m"``, ``"90s"``, ``"2d"`` or a plain number of seconds (> 0)."""
    text = str(value).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration such as 6h, 30m, 90s or 3600") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def checked_clicks(clicks, known, latest: float | None = None) -> tuple[list[str], list[str], list[float]]:
    """``(users, news ids, times)`` of ``clicks`` (a list of ``{"user_id", "news_id", "time"}``),
    checked whole: every problem is one ``ValueError``/``TypeError`` naming the click,
    ``known(news_id)`` must be true for every news id, and no time may be after ``latest``
    (seconds since the epoch: the server's clock plus :data:`FUTURE_TOLERANCE`)."""
    if isinstance(clicks, (Mapping, str, bytes)) or not isinstance(clicks, Sequence):
        raise TypeError(f"expected a list of clicks, got {type(clicks).__name__}: pass [click, ...] even for one")
    users, news, times = [], [], []
    for i, c in enumerate(clicks):
        if not isinstance(c, Mapping):
            raise TypeError(f"click {i}: expected an object with user_id, news_id and time, got {type(c).__name__}")
        extra = sorted(set(c) - {"user_id", "news_id", "time"})
        missing = [f for f in ("user_id", "news_id", "time") if c.get(f) is None]
        if extra or missing:
            raise ValueError(f"click {i}: " + (f"unknown field(s) {extra}" if extra else f"missing {missing}"))
        user = check_text(c["user_id"], f"click {i}: user_id")
        if not user.strip():
            raise ValueError(f"click {i}: user_id is empty")
        news_id = check_text(c["news_id"], f"click {i}: news_id")
        if not known(news_id):
            raise KeyError(f"click {i}: unknown news id {news_id!r} (add the article with POST /news first)")
        when = parse_time(c["time"], f"click {i}: time")
        if latest is not None and when > latest:
            clock = datetime.fromtimestamp(latest - FUTURE_TOLERANCE, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise ValueError(
                f"click {i}: time {c['time']!r} is in the future (the server's clock says {clock}; a click may be "
                f"at most {FUTURE_TOLERANCE:g} s ahead): check the sender's clock"
            )
        users.append(user), news.append(news_id), times.append(when)
    return users, news, times


def store_options(options: dict[str, Any], folder: str | os.PathLike) -> dict[str, Any]:
    """``options`` with ``store="auto"`` made ``folder/clicks.sqlite``, and ``follow_seconds``
    defaulted to 1 for a PostgreSQL store (several processes share it)."""
    options = dict(options)
    if options.get("store") == "auto":
        options["store"] = Path(folder) / "clicks.sqlite"
    if str(options.get("store") or "").startswith("postgres") and options.get("follow_seconds") is None:
        options["follow_seconds"] = 1.0
    return options
