"""Who may reach the server and what it shows: the Host rule (DNS rebinding) and shown sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenekv.web.auth import host_ok, own_host_names
from scenekv.web.shown_source import shown_source


@pytest.mark.parametrize(
    ("host", "bound", "ok"),
    [
        ("localhost:8765", "127.0.0.1", True),
        ("127.0.0.1:8765", "127.0.0.1", True),
        ("[::1]:8765", "127.0.0.1", True),
        ("app.localhost", "127.0.0.1", True),  # *.localhost never leaves the machine (RFC 6761)
        ("attacker.example:8765", "127.0.0.1", False),  # a name re-resolved to 127.0.0.1
        ("attacker.example.", "127.0.0.1", False),
        ("10.0.0.5:8765", "127.0.0.1", False),  # a loopback server is not reached by that address
        ("10.0.0.5:8765", "0.0.0.0", True),  # an address: rebinding needs a name
        ("attacker.example", "0.0.0.0", False),
        ("proxy.internal:443", "0.0.0.0", True),  # --allow-host
        ("", "127.0.0.1", False),
        (None, "127.0.0.1", False),
        ("[::1", "127.0.0.1", False),  # unparsable: refused, not an exception
    ],
)
def test_host_rule(host, bound, ok):
    names = own_host_names(bound, ["proxy.internal"])
    assert host_ok(host, names, bound) is ok


def test_allow_any_host():
    assert host_ok("anything.example", own_host_names("127.0.0.1", ["*"]), "127.0.0.1")


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("push", "push"),
        ("", "push"),
        ("rtsp://admin:hunter2@10.0.0.7:554/live?token=abc", "rtsp://10.0.0.7:554/live"),
        ("https://user@cdn.example/path/index.m3u8#x", "https://cdn.example/path/index.m3u8"),
        ("rtsp://[fe80::1]:554/s", "rtsp://[fe80::1]:554/s"),
        ("/srv/media/cams/door.mp4", "file:cams/door.mp4"),  # under the media root
        ("/home/op/secret/clip.mp4", "file:clip.mp4"),  # elsewhere: the name only
        ("http://[::1/x", "url"),  # a URL that cannot be parsed shows nothing of itself
    ],
)
def test_attach_shows_no_credentials_and_no_server_path(stored, shown):
    assert shown_source(stored, Path("/srv/media")) == shown
