"""`scenekv frames`: what a user sees on stdout/stderr and the exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scenekv.cli import main


def run_cli(capsys, *argv):
    code = main(["frames", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines(media, capsys):
    path = media("cfr25.mp4", fps=25, gop=10)
    code, out, err = run_cli(capsys, path, "--fps", "2", "--json", "--size", "64x48")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == ""
    frames, summary = lines[:-1], lines[-1]
    assert frames[:3] == [
        {"index": 0, "pts": 0.0, "width": 64, "height": 48},
        {"index": 1, "pts": 0.52, "width": 64, "height": 48},
        {"index": 2, "pts": 1.0, "width": 64, "height": 48},
    ]
    assert len(frames) == 6
    assert {k: summary[k] for k in ("frames", "duration", "dropped", "bad_packets")} == {
        "frames": 6,
        "duration": 3.0,
        "dropped": 0,
        "bad_packets": 0,
    }
    assert summary["decode_s"] > 0 and summary["method"] in ("decode", "seek")


def test_readable_table_and_max_frames(media, capsys):
    path = media("rot90.mp4", fps=10, duration=1.0, rotation=90)
    code, out, err = run_cli(
        capsys, path, "--fps", "0", "--max-frames", "3", "--max-side", "80", "--method", "seek"
    )
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0] == f"{path} (file, method seek)"
    assert lines[2].split() == ["0", "0.000", "60x80"]
    assert lines[4].split() == ["2", "0.200", "60x80"]
    assert lines[5].startswith("3 frames over 0.30 s, 0 dropped, 0 bad packets")


@pytest.mark.parametrize(
    "make,argv,message",
    [
        (None, ["/no/such/video.mp4"], "no such file: /no/such/video.mp4"),
        ("empty", [], "is empty (0 bytes)"),
        ("text", [], "is not a readable media file"),
        ("audio", [], "has no video stream (streams found: audio)"),
        (None, ["gopher://127.0.0.1/x"], "unsupported source scheme 'gopher://'"),
        (None, ["rtsp://127.0.0.1:1/x", "--timeout", "2"], "cannot open rtsp://127.0.0.1:1/x"),
        ("video", ["--size", "big"], "size must look like WIDTHxHEIGHT"),
        ("video", ["--fps", "-2"], "--fps must be positive"),
    ],
)
def test_bad_input_one_line_exit_2(media, tmp_path, capsys, make, argv, message):
    from scenekv.world.cut_video import make_audio

    path = None
    if make == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    elif make == "text":
        path = tmp_path / "notes.mkv"
        path.write_text("hello\n" * 100)
    elif make == "audio":
        path = make_audio(tmp_path / "tone.m4a", duration=0.3)
    elif make == "video":
        path = media("cfr25.mp4", fps=25, gop=10)
    code, out, err = run_cli(capsys, *([path] if path else []), *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("scenekv frames: error: ") and message in err
    assert "Traceback" not in err


def test_damaged_file_warns_on_stderr_and_counts_in_summary(media, tmp_path, capsys):
    data = bytearray(media("whole.mp4", fps=25, duration=4.0, gop=25).read_bytes())
    start = int(len(data) * 0.4)
    for i in range(start, start + 3000, 7):
        data[i] = (data[i] * 31 + 17) % 256
    path = tmp_path / "bad.mp4"
    path.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, path, "--json")
    summary = json.loads(out.splitlines()[-1])
    assert code == 0 and summary["bad_packets"] > 0 and summary["frames"] >= 1
    assert err == (
        f"scenekv frames: warning: {path}: skipped {summary['bad_packets']} damaged packet(s); "
        "every decodable frame was delivered\n"
    )


def test_real_process_with_a_traceback_free_error(tmp_path):
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "frames", str(tmp_path / "missing.mp4")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"scenekv frames: error: no such file: {tmp_path / 'missing.mp4'}\n"


def test_ctrl_c_stops_a_live_source_with_a_summary(tmp_path):
    """SIGINT while reading an endless live stream: clean stop, summary printed, exit 0."""
    from scenekv.world.cut_video import make_video

    from support.live_server import TSServer

    clip = make_video(tmp_path / "clip.ts", duration=3.0, fps=25, size=(160, 120), gop=25)
    server = TSServer(clip.read_bytes(), 3.0, speed=1.0, loop=True)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scenekv.cli", "frames", server.url, "--json", "--fps", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as a terminal would: a suite started as a background job (`&`) inherits SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        first = proc.stdout.readline()  # a frame arrived: the stream is flowing
        assert json.loads(first)["index"] == 0
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
    summary = json.loads(out.splitlines()[-1])
    assert proc.returncode == 0
    assert summary["frames"] >= 2 and summary["method"] == "live" and summary["reconnects"] == 0
    assert "interrupted" in err and "Traceback" not in err


def test_cli_module_imports_no_heavy_packages():
    """`scenekv --help` must stay instant: the frames command loads PyAV/numpy only when it runs."""
    code = (
        "import sys, scenekv.cli; scenekv.cli.build_parser(); "
        "print('av' in sys.modules, 'numpy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"]
