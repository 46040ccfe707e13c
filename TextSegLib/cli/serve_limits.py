"""``textseg serve`` options for the memory budget and the connection limits, each checked once.

The options are read as text and checked here, so a bad value is one line that names the option,
what is wrong and an example (``--memory-budget 8G``), not click's usage block.
"""
from __future__ import annotations

import math
import re
from typing import Any

import click

from ..errors import TextSegError

_UNITS = {"": 2**20, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}  # a bare number is MB
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class LimitError(TextSegError):
    """A ``textseg serve`` limit option with a bad value."""


def parse_size_mb(option: str, text: str) -> float:
    """``"8G"`` / ``"512M"`` / ``"4096"`` (MB) / ``"1.5GB"`` -> megabytes; a bad value is one clear line."""
    m = _SIZE.match(str(text))
    if not m:
        raise LimitError(f"{option} {text!r} is not a size.",
                         f"Give a number with K, M or G (a bare number is MB), e.g. {option} 8G.")
    mb = float(m.group(1)) * _UNITS[m.group(2).upper()] / 2**20
    if not math.isfinite(mb) or mb < 1:
        raise LimitError(f"{option} {text!r} is below 1 MB.", f"Give at least 1M, e.g. {option} 8G.")
    return mb


def parse_number(option: str, text: str, *, integer: bool, low: float, high: float | None = None) -> float:
    """A number in [low, high] (an int when ``integer``); a bad value is one clear line."""
    kind = "a whole number" if integer else "a number"
    try:
        v = int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise LimitError(f"{option} {text!r} is not {kind}.", f"Give {kind}, e.g. {option} {int(max(low, 1)) * 10}.") from None
    if not math.isfinite(v) or v < low or (high is not None and v > high):
        bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise LimitError(f"{option} {text!r} is out of range.", f"Give {kind} {bound}.")
    return v


def limit_options(f):
    """The limit options of ``textseg serve`` (all optional; the defaults are the server's)."""
    opts = [
        ("--memory-budget", "SIZE", "Memory for uploads being decoded + image cache + kept results (default 4G)."),
        ("--max-decoded", "SIZE", "Largest decoded upload (default: half the memory budget)."),
        ("--streams-per-client", "N", "Event streams one client address may follow (default 16)."),
        ("--max-connections", "N", "Open connections in all (default: open-file limit - 128, at most 4096)."),
        ("--connections-per-address", "N", "Open connections per client address (default 64)."),
        ("--header-timeout-s", "S", "Seconds a request head may take to arrive (default 10)."),
        ("--body-timeout-s", "S", "Seconds a request body may pause between bytes (default 30)."),
        ("--keep-alive-s", "S", "Seconds an idle kept-alive connection stays open (default 5)."),
    ]
    for name, metavar, help_ in reversed(opts):
        f = click.option(name, metavar=metavar, default=None, help=help_)(f)
    return f


def server_limits(memory_budget: str | None = None, max_decoded: str | None = None,
                  streams_per_client: str | None = None, max_connections: str | None = None,
                  connections_per_address: str | None = None, header_timeout_s: str | None = None,
                  body_timeout_s: str | None = None, keep_alive_s: str | None = None) -> dict[str, Any]:
    """The ``create_app`` keyword arguments for the given options (unset ones are left out)."""
    from ..remote.budget import DEFAULT_BUDGET_MB
    from ..remote.connections import ConnectionLimits

    out: dict[str, Any] = {}
    if memory_budget is not None:
        out["memory_budget_mb"] = parse_size_mb("--memory-budget", memory_budget)
    if max_decoded is not None:
        out["max_decoded_mb"] = parse_size_mb("--max-decoded", max_decoded)
        budget = out.get("memory_budget_mb", DEFAULT_BUDGET_MB)
        if out["max_decoded_mb"] > budget:
            raise LimitError(f"--max-decoded {max_decoded} is larger than the memory budget ({budget:,.0f} MB).",
                             "Raise --memory-budget, or lower --max-decoded.")
    if streams_per_client is not None:
        out["streams_per_client"] = int(parse_number("--streams-per-client", streams_per_client, integer=True, low=1))
    limits = ConnectionLimits()
    given = False
    if max_connections is not None:
        limits.max_connections = int(parse_number("--max-connections", max_connections, integer=True, low=2,
                                                  high=1_000_000))
        given = True
    if connections_per_address is not None:
        limits.per_address = int(parse_number("--connections-per-address", connections_per_address, integer=True,
                                              low=1))
        given = True
    for option, attr, text in (("--header-timeout-s", "header_timeout_s", header_timeout_s),
                               ("--body-timeout-s", "body_timeout_s", body_timeout_s),
                               ("--keep-alive-s", "keep_alive_s", keep_alive_s)):
        if text is not None:
            setattr(limits, attr, parse_number(option, text, integer=False, low=1.0 if attr == "keep_alive_s" else 0.1,
                                               high=86400))
            given = True
    if limits.max_connections is not None and limits.per_address > limits.max_connections:
        raise LimitError(f"--connections-per-address {limits.per_address} is more than --max-connections "
                         f"{limits.max_connections}.", "Lower --connections-per-address or raise --max-connections.")
    if given:
        out["connection_limits"] = limits
    return out
