"""A real `cmdrec serve` process on a loopback port, and the log watcher following a growing log."""

import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from cmdrec.artifacts.bundle import export_bundle
from cmdrec.errors import InputError
from cmdrec.serving import Predictor
from cmdrec.serving.watch import LogFollower, LogFormat, bundle_sink, server_sink, watch
from cmdrec.training.loop import train
from tests.conftest import tiny_run

HEADER = "timestamp,user_id,command\n"


@pytest.fixture(scope="module")
def bundle(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    train(tiny_run(tiny_data, root, "gpt2", training={"epochs": 1}), show_progress=False)
    return export_bundle(root / "gpt2", root / "bundle")


def line(minute, command):
    return f"2025-03-06T09:{minute:02d}:00,u1,{command}\n"


def test_the_follower_reads_appended_lines_and_survives_truncation_and_rotation(tmp_path):
    log = tmp_path / "app.csv"
    log.write_text(HEADER + line(0, "Open"))
    follower = LogFollower(log, LogFormat())
    assert [c for c, _ in follower.poll()] == ["Open"]
    with log.open("a") as handle:
        handle.write(line(1, "Wall") + "2025-03-06T09:02:00,u1,Do")  # the last line is still being written
    assert [c for c, _ in follower.poll()] == ["Wall"]
    with log.open("a") as handle:
        handle.write("or\n")
    assert [c for c, _ in follower.poll()] == ["Door"]
    log.write_text(HEADER + line(5, "Undo"))  # truncated and rewritten, shorter than before
    assert [c for c, _ in follower.poll()] == ["Undo"]
    log.rename(tmp_path / "app.csv.1")
    log.write_text(HEADER + line(6, "Save") + line(7, "Close") + line(8, "Open"))  # rotated: a new file
    assert [c for c, _ in follower.poll()] == ["Save", "Close", "Open"]
    with log.open("a") as handle:
        handle.write("2025-03-06T09:09:00,u1\n")
    with pytest.raises(InputError, match=r"app.csv, line 5: expected 3 fields, found 2"):
        follower.poll()
    compressed = tmp_path / "app.csv.gz"
    compressed.write_bytes(gzip.compress(HEADER.encode()))
    with pytest.raises(InputError, match="compressed log cannot be followed"):
        LogFollower(compressed, LogFormat())


def test_watching_a_log_in_process_shows_the_bundles_suggestions(bundle, tmp_path):
    log = tmp_path / "app.jsonl"
    log.write_text("")
    shown, stop = [], threading.Event()
    follower = LogFollower(log, LogFormat())
    thread = threading.Thread(
        target=watch, args=(follower, bundle_sink(bundle, 3, None), lambda *a: shown.append(a), 0.05, stop)
    )
    thread.start()
    try:
        with log.open("a") as handle:
            handle.write('{"timestamp": "2025-03-06T09:00:00", "command": "Wall"}\n')
            handle.write('{"timestamp": "2025-03-06T09:00:05", "command": "Window.Focus"}\n')
            handle.write('{"timestamp": "2025-03-06T09:00:09", "command": "Door"}\n')
        deadline = time.monotonic() + 20
        while not shown and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    events, suggestions = shown[0][:2]
    assert [c for c, _ in events] == ["Wall", "Window.Focus", "Door"]
    # the noise event is cleaned out, as in training
    assert [c for c, _ in suggestions] == Predictor(bundle).recommend(["Wall", "Door"], k=3).commands


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(bundle):
    """`cmdrec serve` in its own process on a free loopback port; yields (url, process)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cmdrec", "serve", str(bundle), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    try:
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server.output = server.communicate(timeout=30)[0]


def test_a_real_server_process_serves_the_watcher_and_shuts_down_gracefully(bundle, tmp_path):
    with running_server(bundle) as (url, server):
        answer = httpx.post(f"{url}/v1/recommend", json={"history": ["Wall", "Door"], "k": 3}).json()
        expected = Predictor(bundle).recommend(["Wall", "Door"], k=3).commands
        assert [s["command"] for s in answer["suggestions"]] == expected
        log = tmp_path / "app.csv"
        log.write_text(HEADER + line(0, "Open") + line(1, "Wall"))
        shown = []
        watch(LogFollower(log, LogFormat()), server_sink(url, "watched", 3, None), lambda *a: shown.append(a),
              0.05, max_seconds=0.5)  # fmt: skip
        state = httpx.get(f"{url}/v1/sessions/watched").json()
        assert state["recent"] == ["Open", "Wall"]
        assert [s["command"] for s in state["suggestions"]] == [c for c, _ in shown[0][1]]
    # uvicorn finishes in-flight requests, then re-raises SIGTERM so the exit status tells how it ended
    assert server.returncode in (0, -signal.SIGTERM) and "Traceback" not in server.output, server.output
    assert f"serving {bundle} on {url}" in server.output
