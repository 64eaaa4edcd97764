"""The `scenekv` command line.

Each subcommand is a module of this package (``frames.py`` for ``scenekv frames`` ...) with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; nothing below the CLI imports it. Those modules
import only argparse at top level so that ``scenekv --help`` stays instant; heavy imports (torch, av)
happen inside run().
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scenekv import __version__
from scenekv.errors import UserError

# name -> module implementing it; order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "serve": "scenekv.cli.serve",
    "encoders": "scenekv.cli.encoders",
    "frames": "scenekv.cli.frames",
    "inspect": "scenekv.cli.inspect",
    "scenes": "scenekv.cli.scenes",
    "ask": "scenekv.cli.ask",
    "caption": "scenekv.cli.caption",
    "memory": "scenekv.cli.memory",
    "search": "scenekv.cli.search",
    "watch": "scenekv.cli.watch",
    "make-video": "scenekv.cli.make_video",
    "make-world": "scenekv.cli.make_world",
    "train-world": "scenekv.cli.train_world",
}


# the service commands read SCENEKV_<FLAG> variables (scenekv/cli/env_flags.py); the others, whose flags
# mean other things (make-video's --fps is its output rate), do not
ENV_COMMANDS = ("serve", "encoders", "ask", "caption", "watch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenekv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scenekv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from scenekv.cli.env_flags import apply_env_defaults

    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    try:
        if command in ENV_COMMANDS:  # SCENEKV_<FLAG> sets --<flag>'s default; the flag still wins
            apply_env_defaults(parser._subparsers._group_actions[0].choices[command])
    except UserError as exc:
        print(f"scenekv: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `scenekv frames x | head` must not print a traceback
        sys.stderr.close()
        return 0
    except Exception as exc:  # one sentence, never a traceback (unless --verbose asks for it)
        from scenekv.cli.failures import describe

        if getattr(args, "verbose", False) and not isinstance(exc, UserError):
            raise
        message, status = describe(exc)
        print(f"scenekv {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
