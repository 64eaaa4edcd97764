"""Client-given names and URLs: every malformed or hostile one is a ProtocolError with a stable code
(bad_request / forbidden_source), never an exception from Path or urlsplit underneath."""

from __future__ import annotations

import pytest

from scenekv.web.media import safe_relative
from scenekv.web.protocol import ProtocolError
from scenekv.web.sources import list_media, media_file, resolve_source


def public(host, port):
    """A name service where every name is one public address."""
    return [(0, 0, 0, "", ("93.184.216.34", 0))]


def code(source, root=None):
    with pytest.raises(ProtocolError) as info:
        resolve_source(source, root, resolve=public)
    return info.value.code


@pytest.mark.parametrize(
    "name", ["clip.mp4", "sub/clip.mp4", "a b/c-d_e.mp4", "vidéo.mp4", "%2e%2e", "x" * 255, "a/" * 500 + "b"]
)
def test_safe_relative_keeps_plain_names(name):
    assert safe_relative(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a\x00.mp4",  # Path.resolve raises ValueError
        "a\x1b[2J.mp4",
        "a\x7f",
        "\udc80.mp4",  # not encodable
        "x" * 256,  # ENAMETOOLONG
        "a/" * 512 + "b",  # over 1024 characters
        "/etc/passwd",
        "\\windows",
        "a\\..\\b",
        "..",
        ".",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        ".env",
        "sub/.git/config",
    ],
)
def test_safe_relative_refuses(name):
    assert safe_relative(name) is None


@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "sub" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (root / ".git" / "a.mp4").write_bytes(b"x")
    (root / "hidden-link.mp4").symlink_to(root / ".git" / "a.mp4")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    playlists = {
        "list.m3u8": b"x",
        "concat.txt": b"x",
        "cam.sdp": b"x",
        "hls.mp4": b"#EXTM3U\n#EXTINF:2,\n../../secret.ts\n",
        "bom.mp4": b"\xef\xbb\xbf  #extm3u\n",
        "concat.mp4": b"ffconcat version 1.0\nfile other.mp4\n",
        "pls.mp4": b"[playlist]\nFile1=http://10.0.0.1/x\n",
        "sdp.mp4": b"v=0\r\no=- 0 0 IN IP4 10.0.0.1\r\n",
        "late-sdp.mp4": b"o=- 0 0\nc=IN IP4 10.0.0.1\n",
        "dash.mp4": b'<?xml version="1.0"?><MPD></MPD>',
    }
    for name, data in playlists.items():
        (root / name).write_bytes(data)
    (root / "link.mp4").symlink_to(root / "list.m3u8")
    return root


def test_file_sources_that_are_malformed_are_bad_request(root):
    for name in ["", "a\x00", "\udc80.mp4", "x" * 300, "a/" * 600, "loop1", "missing.mp4"]:
        assert code("file:" + name, root) == "bad_request", repr(name[:20])


def test_file_sources_that_reach_out_or_into_hidden_files_are_forbidden(root):
    for name in ["../x.mp4", "sub/../sub/clip.mp4", "/etc/passwd", "\\x", ".git/a.mp4", "hidden-link.mp4"]:
        assert code("file:" + name, root) == "forbidden_source", name


def test_playlists_and_indirection_files_are_forbidden(root):
    names = ["list.m3u8", "concat.txt", "cam.sdp", "hls.mp4", "bom.mp4", "concat.mp4", "pls.mp4"]
    for name in [*names, "sdp.mp4", "late-sdp.mp4", "dash.mp4", "link.mp4"]:
        with pytest.raises(ProtocolError) as info:
            media_file(name, root)
        assert info.value.code == "forbidden_source", name
        assert "playlist" in str(info.value), name
    assert media_file("sub/clip.mp4", root) == (root / "sub" / "clip.mp4").resolve()


def test_the_page_lists_no_hidden_files_or_playlist_names(root):
    listed = list_media(root)
    assert "sub/clip.mp4" in listed
    for name in [".git/a.mp4", "hidden-link.mp4", "list.m3u8", "concat.txt", "cam.sdp", "link.mp4", "loop1"]:
        assert name not in listed, name
    assert "hls.mp4" in listed  # a playlist named .mp4 is found when it is opened, not listed


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x",  # urlsplit: Invalid IPv6 URL
        "rtsp://cam.example.com:99999/x",  # .port: out of range
        "rtsp://cam.example.com:x/y",
        "rtsp://cam.example.com:0/x",
        "http://127.0.0.1\x00@cam.example.com/",  # C would read the host before the NUL
        "http://cam.example.com/a\x00b",
        "http://cam example.com/",
        "http://us er:pw@cam.example.com/",
        "http://cam.example.com/\tx",  # urlsplit silently drops tabs; FFmpeg does not
        "http://cämera.example.com/",
        "rtmp://cam.example.com/app socks=10.0.0.1:1080",  # librtmp reads options after a space
        "http://cam.example.com/" + "a" * 3000,
        "udp://cam.example.com:5000?fifo_size=999999999",
        "udp://cam.example.com:5000?timeout=-1",
    ],
)
def test_broken_urls_are_bad_request(url):
    assert code(url) == "bad_request"


def test_urls_are_normalised_for_ffmpeg():
    assert resolve_source("HTTP://cam.example.com/A", None, resolve=public) == "http://cam.example.com/A"
    kept = resolve_source(
        "udp://cam.example.com:5000?localaddr=10.0.0.1&localport=6379&reuse=1&fifo_size=1000"
        "&overrun_nonfatal=1#&fifo_size=99999999",
        None,
        resolve=public,
    )
    assert kept == "udp://cam.example.com:5000?fifo_size=1000&overrun_nonfatal=1"
    assert resolve_source("udp://cam.example.com:5000", None, resolve=public) == "udp://cam.example.com:5000"
    url = "rtsp://cam.example.com/stream?channel=1&subtype=0"
    assert resolve_source(url, None, resolve=public) == url
