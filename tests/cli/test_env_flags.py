"""SCENEKV_<FLAG> variables set flag defaults (a token need not sit in `ps`); the command line wins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scenekv.cli import build_parser
from scenekv.cli.env_flags import apply_env_defaults
from scenekv.errors import UserError


def _serve(environ: dict, argv: list[str]):
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    apply_env_defaults(serve, environ)
    return parser.parse_args(["serve", *argv])


def test_environment_sets_defaults_and_flags_override_them():
    env = {
        "SCENEKV_TOKEN": "s3cret",
        "SCENEKV_PORT": "9001",
        "SCENEKV_ALLOW_ORIGIN": "https://a.example, https://b.example",
        "SCENEKV_KV_DTYPE": "int4",
        "SCENEKV_MAX_FRAME_MB": "2.5",
    }
    args = _serve(env, [])
    assert (args.token, args.port, args.kv_dtype, args.max_frame_mb) == ("s3cret", 9001, "int4", 2.5)
    assert args.allow_origin == ["https://a.example", "https://b.example"]
    args = _serve(env, ["--port", "9002", "--token", "other", "--allow-origin", "https://c.example"])
    assert (args.port, args.token) == (9002, "other")
    assert args.allow_origin == ["https://c.example"]  # replaced, not added to: the command line wins
    assert _serve({"SCENEKV_TOKEN": "s3cret\n"}, []).token == "s3cret"  # a secret file's newline
    assert _serve({}, []).token is None  # nothing set: the usual defaults
    empty = _serve({"SCENEKV_TOKEN": "", "SCENEKV_ENCODERS": " "}, [])  # compose's ${SCENEKV_TOKEN:-}
    assert (empty.token, empty.encoders) == (None, None)
    assert _serve({"SCENEKV_ENCODERS": "3"}, []).encoders == 3
    assert _serve({"SCENEKV_LOAD_TIMEOUT": "15m"}, []).load_timeout == 900.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCENEKV_PORT": "eighty"}, "SCENEKV_PORT='eighty' is not a valid int"),
        ({"SCENEKV_KV_DTYPE": "int2"}, "SCENEKV_KV_DTYPE='int2': choose from int8, int4"),
        ({"SCENEKV_FPS": "fast"}, "SCENEKV_FPS='fast' is not a valid float"),
        ({"SCENEKV_LOAD_TIMEOUT": "0"}, "SCENEKV_LOAD_TIMEOUT='0': must be more than 0 s, got 0"),
    ],
)
def test_a_bad_value_names_its_variable(env, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        _serve(env, [])


def test_the_command_refuses_a_bad_variable_in_one_line():
    run = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "serve", "--help"],
        env={"SCENEKV_PORT": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stderr.strip() == "scenekv: error: SCENEKV_PORT='x' is not a valid int"
