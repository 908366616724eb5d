"""Remote embedding / LLM servers that misbehave: the key never leaks, a hang ends within the
configured bound, and junk answers get a message naming the endpoint."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cmdrec.errors import InputError
from cmdrec.text.augment import DescriptionAugmenter
from cmdrec.text.providers import OpenAIProvider, redact

KEY = "sk-test-SECRET1234567890abcdef"


class Misbehaving(BaseHTTPRequestHandler):
    mode = "refuse"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.mode == "hang":
            time.sleep(3)
            return self._send(200, b"{}")
        if self.mode == "refuse":  # as some servers do: the header echoed in the error text
            message = f"Incorrect API key provided: {self.headers['Authorization']}"
            return self._send(
                401, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
            )
        if self.mode == "junk":
            return self._send(200, b"<html>not json")
        if self.mode == "shape":
            data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]
            return self._send(200, json.dumps({"object": "list", "data": data, "model": "m"}).encode())
        if self.mode == "null":
            return self._send(200, json.dumps({"object": "list", "data": None, "model": "m"}).encode())
        if self.mode == "chat-null":
            return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                               "choices": None}).encode())  # fmt: skip
        return self._send(500, b"{}")

    def _send(self, status, data):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the hang case)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    pytest.importorskip("openai")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def assert_no_key(error, caplog, capsys):
    everything = [str(error.value), repr(error.value.__cause__), caplog.text, *capsys.readouterr()]
    assert not any(KEY in text or "SECRET" in text for text in everything)
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no chained traceback with the key


@pytest.mark.parametrize(
    "mode,message",
    [
        ("refuse", r"refused: HTTP 401: .*\[redacted\]"),
        ("junk", "could not be read|malformed answer"),
        ("shape", "malformed answer: ValueError: 3 texts but 1 vectors"),
        ("null", "could not be read|malformed answer"),
    ],
)
def test_embedding_failures_name_the_endpoint_and_never_show_the_key(server, mode, message, caplog, capsys):
    Misbehaving.mode = mode
    provider = OpenAIProvider("m", server, timeout_seconds=5, max_retries=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError, match=message) as error:
        provider.embed(["a", "b", "c"])
    assert f"request to {server}" in str(error.value)
    assert_no_key(error, caplog, capsys)


def test_a_server_that_hangs_is_given_up_within_the_configured_bound(server, caplog, capsys):
    Misbehaving.mode = "hang"
    provider = OpenAIProvider("m", server, timeout_seconds=0.3, max_retries=5, max_retry_seconds=1.5)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError, match=r"no usable answer after \d attempt") as error:
        provider.embed(["a"])
    assert time.monotonic() - started < 3  # well before 5 retries of a 3 s hang
    assert "timeout 0.3 s per request" in str(error.value)
    assert_no_key(error, caplog, capsys)


def test_a_malformed_llm_answer_names_the_endpoint(server, tmp_path, caplog, capsys):
    Misbehaving.mode = "chat-null"
    augmenter = DescriptionAugmenter("m", server, tmp_path, "an app", max_retries=0, timeout_seconds=5)
    with pytest.raises(InputError, match=f"chat completion request to {server}: malformed answer") as error:
        augmenter.describe("Wall", "Modeling", None)
    assert_no_key(error, caplog, capsys)


def test_redaction_covers_the_key_bearer_tokens_and_key_shaped_strings():
    text = f"Bearer {KEY} / Authorization: bearer abc.def / key sk-live-abcdef123456 / {KEY}"
    cleaned = redact(text, KEY)
    assert "SECRET" not in cleaned and "abc.def" not in cleaned and "sk-live" not in cleaned
