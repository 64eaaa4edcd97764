"""Flags from the environment: ``SCENEKV_<FLAG>`` sets the default of ``--<flag>``.

A container or a unit file configures SceneKV the way it configures everything else, and a secret
such as ``SCENEKV_TOKEN`` never has to sit on a command line, where ``ps`` shows it to every user of
the machine. A flag given on the command line still wins. A value that the flag would refuse is a
one-line error naming the variable, before anything starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from scenekv.errors import UserError

PREFIX = "SCENEKV_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(option: str) -> str:
    """``--max-frame-mb`` -> ``SCENEKV_MAX_FRAME_MB``."""
    return PREFIX + option.lstrip("-").replace("-", "_").upper()


def apply_env_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Set the defaults of ``parser``'s long options from ``SCENEKV_*`` variables (``environ``,
    default ``os.environ``); repeatable flags take a comma-separated list."""
    environ = os.environ if environ is None else environ
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest in ("help", "version") or env_name(longs[0]) not in environ:
            continue
        name, raw = env_name(longs[0]), environ[env_name(longs[0])].strip()
        if not raw:  # set but empty (compose's ${SCENEKV_TOKEN:-}): as if unset
            continue
        action.default = _value(action, name, raw)
        action.required = False
        if isinstance(action, argparse._AppendAction):
            action.__class__ = _ReplacingAppend  # the command line's values replace the variable's


class _ReplacingAppend(argparse._AppendAction):
    """A repeatable flag whose default came from the environment: given on the command line, its
    values replace the variable's instead of adding to them (the command line wins)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, [])
        super().__call__(parser, namespace, values, option_string)


def _value(action: argparse.Action, name: str, raw: str):
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise UserError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")
        return (word in _TRUE) == isinstance(action, argparse._StoreTrueAction)
    if isinstance(action, argparse._AppendAction):
        return [_one(action, name, part.strip()) for part in raw.split(",") if part.strip()]
    return _one(action, name, raw)


def _one(action: argparse.Action, name: str, raw: str):
    try:
        value = action.type(raw) if callable(action.type) else raw
    except argparse.ArgumentTypeError as exc:  # a type function's own sentence (not a ValueError)
        raise UserError(f"{name}={raw!r}: {exc}") from None
    except (TypeError, ValueError):
        kind = getattr(action.type, "__name__", "value")
        raise UserError(f"{name}={raw!r} is not a valid {kind}") from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{name}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return value
