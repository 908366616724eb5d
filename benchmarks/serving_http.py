"""The HTTP service under load, on this machine: `cmdrec serve` in one process, an open-loop load
generator in another (requests sent at a fixed arrival rate whatever the response times, so
queueing shows in the latency, which is measured from each request's scheduled send time).

Measures latency p50/p95/p99 of single requests and of live-session appends at fixed rates, the
highest rate of single requests the server sustains (p99 under --sustain-p99-ms, no errors, the
rate achieved), the batch endpoint's histories/s, what is answered above saturation (503s only),
memory after --sessions distinct live sessions, a battery of malformed requests (each must get a
4xx and the next good request must succeed), and that the served suggestions of every test session
equal the offline evaluation (Recall@10, NDCG@10 up to score ties). Loopback only; bounded in time.

    python benchmarks/serving_http.py --run runs/bench/mixtral-full-serving \\
        --events outputs/bench/vs/processed/events.parquet

Writes benchmarks/results/serving_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from cmdrec.artifacts.bundle import export_bundle
from cmdrec.experiments.suite import machine
from cmdrec.io import write_json_atomic
from cmdrec.serving import Predictor
from cmdrec.training.evaluate import evaluate_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import test_histories  # noqa: E402 - the in-process benchmark's history builder

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- a lean HTTP/1.1 client


class Connection:
    """Keep-alive HTTP/1.1 over asyncio streams: a generator light enough not to be the bottleneck."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


class Pool:
    """At most `size` connections, as a fleet of application clients would hold; a request beyond
    them waits for one (its latency still counts from its scheduled time)."""

    def __init__(self, port: int, size: int = 256):
        self.port, self.idle, self.slots = port, [], asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        async with self.slots:
            reused = bool(self.idle)
            connection = self.idle.pop() if reused else await Connection.open(self.port)
            try:
                answer = await connection.request(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                connection.writer.close()
                if not reused:
                    raise
                # the server closed an idle keep-alive connection: the request never reached it
                connection = await Connection.open(self.port)
                answer = await connection.request(method, path, body)
            self.idle.append(connection)
            return answer


async def open_loop(port: int, requests: list[tuple[str, bytes]], rate: float, connections: int = 256) -> dict:
    """Send `requests` at `rate` per second regardless of responses; latency from each scheduled time."""
    pool, latencies, statuses, failures = Pool(port, connections), [], {}, 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def fire(path: str, body: bytes, scheduled: float):
        nonlocal failures
        try:
            status, _ = await pool.request("POST", path, body)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            failures += 1
            return
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append((loop.time() - scheduled) * 1000)

    tasks = []
    for index, (path, body) in enumerate(requests):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(fire(path, body, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    return {
        "rate": rate,
        "sent": len(requests),
        "achieved_rate": round(sum(statuses.values()) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "connection_failures": failures,
        **percentiles(latencies),
    }


def percentiles(latencies: list[float]) -> dict:
    if len(latencies) < 2:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2)}


def _generator(port: int, requests: list, rate: float, connections: int, results) -> None:
    """The load generator's own process; reports its CPU time beside the latencies."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcome = asyncio.run(open_loop(port, requests, rate, connections))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    outcome["generator_cpu_share"] = round(cpu / (time.perf_counter() - started), 3)  # of one core
    results.put(outcome)


def generate(port: int, requests: list, rate: float, connections: int = 256) -> dict:
    results = multiprocessing.get_context("spawn").Queue()
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_generator, args=(port, requests, rate, connections, results))
    process.start()
    outcome = results.get(timeout=600)
    process.join(30)
    return outcome


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bundle: Path, port: int, settings: list[str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "cmdrec", "serve", str(bundle), *settings, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.25)
    raise SystemExit("the server did not become ready in 120 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


BAD_REQUESTS = [
    {"history": ["X"], "k": -1}, {"history": ["X"], "k": 0}, {"history": ["X"], "k": "5"},
    {"history": ["X"], "k": 2.5}, {"history": ["X"], "k": True}, {"history": ["X"], "k": [3]},
    {"history": ["X"], "k": 10**6}, {"history": []}, {"history": "X"}, {"history": ["X", 3]},
    {"history": None}, {}, {"history": ["X"] * 60_000}, {"history": ["X", "Y"], "timestamps": ["2025-01-01T10:00:00"]},
    {"history": ["X", "Y"], "timestamps": ["2025-01-01T10:00:00", "yesterday"]},
    {"history": ["X", "Y"], "timestamps": ["2025-01-01T10:05:00", "2025-01-01T10:00:00"]},
    {"history": ["X", "Y"], "timestamps": ["2025-01-01T10:00:00", None]}, {"history": ["X"], "timestamps": "now"},
    {"history": ["X"], "attributes": {"nobody": "1"}}, {"history": ["X"], "exclude_seen": "yes"},
    {"history": ["X"], "top_k": 3}, {"history": ["View.OnChangeCaretLine"]},
]  # fmt: skip


def bad_request_battery(url: str, good: dict) -> dict:
    outcomes = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in BAD_REQUESTS:
            bad = client.post("/v1/recommend", json=body)
            after = client.post("/v1/recommend", json=good)
            error = (
                bad.json().get("error", {})
                if bad.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            outcomes.append({"status": bad.status_code, "field": error.get("field"), "next_good": after.status_code})
        raw = client.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
        outcomes.append({"status": raw.status_code, "field": raw.json()["error"]["field"],
                         "next_good": client.post("/v1/recommend", json=good).status_code})  # fmt: skip
        big = client.post("/v1/recommend", content=b'{"history": ["' + b"x" * 20_000_000 + b'"]}')
        outcomes.append({"status": big.status_code, "field": big.json()["error"]["field"],
                         "next_good": client.post("/v1/recommend", json=good).status_code})  # fmt: skip
    return {
        "requests": len(outcomes),
        "all_4xx": all(400 <= o["status"] < 500 for o in outcomes),
        "all_named_a_field": all(o["field"] for o in outcomes),
        "next_good_all_200": all(o["next_good"] == 200 for o in outcomes),
        "outcomes": outcomes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run (exported to a bundle, which is served)")
    parser.add_argument("--events", required=True, help="the processed events.parquet its data was prepared from")
    parser.add_argument("--rates", nargs="+", type=float, default=[50, 100, 200, 400])
    parser.add_argument("--seconds", type=float, default=10, help="length of each fixed-rate phase")
    parser.add_argument("--sustain-rates", nargs="+", type=float, default=[100, 150, 200, 250, 300, 350, 400, 500])
    parser.add_argument("--sustain-p99-ms", type=float, default=100.0)
    parser.add_argument("--overload-rate", type=float, default=4000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--sessions-rate", type=float, default=400, help="appends/s while creating those sessions")
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads of the server's forward pass")
    parser.add_argument("--model-workers", type=int, default=2, help="batches scored at once (a core each)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/serving_http.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cmdrec-serving-http-"))
    bundle = export_bundle(args.run, workdir / "bundle")
    histories, timestamps, targets = test_histories(Predictor(args.run), Path(args.events))
    predictor = Predictor(bundle)
    bodies = [
        json.dumps({"history": h, "timestamps": [t.isoformat() for t in ts], "k": 10}).encode()
        for h, ts in zip(histories, timestamps, strict=True)
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # limits above the longest VS test session (thousands of events), below the battery's oversized requests
    # and a scoring queue (512 histories) that 900 overload clients overfill
    settings = [f"num_threads={args.server_threads}", f"model_workers={args.model_workers}", "max_history=50000",
                "max_body_bytes=16000000", "queue_size=512"]  # fmt: skip
    server = start_server(bundle, port, settings)
    result = {
        "command": shlex.join(["python", "benchmarks/serving_http.py", *sys.argv[1:]]),
        "run": args.run,
        "backbone": predictor.config.model.backbone,
        "input_features": list(predictor.config.model.input_features),
        "server_threads": args.server_threads,
        "model_workers": args.model_workers,
        "server_settings": settings,
        "test_sessions": len(histories),
        "mean_history_events": round(statistics.fmean(len(h) for h in histories), 1),
        "rss_mb_ready": rss_mb(server.pid),
    }
    try:
        # served equals offline, through the batch endpoint
        answers = []
        with httpx.Client(base_url=url, timeout=120) as client:
            for start in range(0, len(histories), 64):
                chunk = [json.loads(b) for b in bodies[start : start + 64]]
                answers += client.post("/v1/recommend/batch", json={"requests": chunk}).json()["results"]
        known = set(predictor.vocabulary)
        scored = [
            ([s["command"] for s in a["suggestions"]], t) for a, t in zip(answers, targets, strict=True) if t in known
        ]
        offline = evaluate_run(args.run)
        result["served_recall@10"] = sum(t in c for c, t in scored) / len(scored)
        result["served_ndcg@10"] = sum(1 / math.log2(c.index(t) + 2) for c, t in scored if t in c) / len(scored)
        result["offline_recall@10"], result["offline_ndcg@10"] = offline["recall@10"], offline["ndcg@10"]
        print(
            f"served Recall@10 {result['served_recall@10']:.4f} (offline {result.get('offline_recall@10')})", flush=True
        )

        def singles(rate: float, seconds: float) -> list:
            count = int(rate * seconds)
            return [("/v1/recommend", bodies[i % len(bodies)]) for i in range(count)]

        generate(port, singles(50, 2), 50)  # warm-up
        result["single_requests"] = []
        for rate in args.rates:
            outcome = generate(port, singles(rate, args.seconds), rate)
            result["single_requests"].append(outcome)
            print("single", outcome, flush=True)

        # live sessions: each request appends the next event of one of 200 sessions replaying test histories
        result["session_appends"] = []
        for rate in args.rates:
            requests, cursor = [], {}
            for index in range(int(rate * args.seconds)):
                session = index % 200
                history, times = histories[session % len(histories)], timestamps[session % len(histories)]
                step = cursor.get(session, 0)
                cursor[session] = step + 1
                cycle, position = divmod(step, len(history))  # a short history replays, a day later each time
                stamp = times[position] + timedelta(days=cycle)
                body = {"commands": [history[position]], "timestamps": [stamp.isoformat()], "k": 10}
                requests.append((f"/v1/sessions/r{int(rate)}-s{session}/events", json.dumps(body).encode()))
            outcome = generate(port, requests, rate)
            result["session_appends"].append(outcome)
            print("append", outcome, flush=True)

        # the highest rate of single requests sustained
        sustained = None
        result["sustain_steps"] = []
        for rate in args.sustain_rates:
            outcome = generate(port, singles(rate, 5), rate)
            result["sustain_steps"].append(outcome)
            print("sustain", outcome, flush=True)
            ok = (
                set(outcome["statuses"]) == {"200"}
                and not outcome["connection_failures"]
                and outcome["p99_ms"] is not None
                and outcome["p99_ms"] <= args.sustain_p99_ms
                and outcome["achieved_rate"] >= 0.95 * rate
            )
            if not ok:
                break
            sustained = rate
        result["max_sustained_single_rate"] = sustained
        # more clients than the queue holds: the excess must be refused (503), not queued without limit
        overload = generate(port, singles(args.overload_rate, 3), args.overload_rate, connections=900)
        result["overload"] = overload
        print("overload", overload, flush=True)

        # the batch endpoint, closed loop: two clients each posting 64 histories at a time
        async def batch_load(seconds: float) -> float:
            pools, done = [Pool(port), Pool(port)], 0
            payloads = [json.dumps({"requests": [json.loads(b) for b in bodies[s : s + 64]]}).encode()
                        for s in range(0, len(bodies) - 63, 64)]  # fmt: skip
            deadline = time.perf_counter() + seconds

            async def client(pool, offset):
                nonlocal done
                index = offset
                while time.perf_counter() < deadline:
                    status, _ = await pool.request("POST", "/v1/recommend/batch", payloads[index % len(payloads)])
                    assert status == 200, status
                    done += 64
                    index += 2

            started = time.perf_counter()
            await asyncio.gather(client(pools[0], 0), client(pools[1], 1))
            return done / (time.perf_counter() - started)

        result["batch_endpoint_histories_per_second"] = round(asyncio.run(batch_load(args.seconds)), 1)
        print("batch", result["batch_endpoint_histories_per_second"], flush=True)

        # memory after many distinct live sessions
        before = rss_mb(server.pid)
        rate = args.sessions_rate

        def first_event(i: int) -> bytes:
            index = i % len(histories)
            return json.dumps(
                {"commands": histories[index][:1], "timestamps": [timestamps[index][0].isoformat()]}
            ).encode()

        requests = [(f"/v1/sessions/m{i}/events", first_event(i)) for i in range(args.sessions)]
        outcome = generate(port, requests, rate)
        metrics = httpx.get(f"{url}/metrics").text
        held = next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith("cmdrec_sessions "))
        result["sessions_memory"] = {"sessions_sent": args.sessions, "sessions_held": held, "rss_mb_before": before,
                                     "rss_mb_after": rss_mb(server.pid), "rate": rate,
                                     "statuses": outcome["statuses"]}  # fmt: skip
        print("sessions", result["sessions_memory"], flush=True)
        result["bad_requests"] = bad_request_battery(url, json.loads(bodies[0]))
        print("bad requests", {k: v for k, v in result["bad_requests"].items() if k != "outcomes"}, flush=True)
        below = [o for o in result["single_requests"] + result["session_appends"] if o["rate"] <= (sustained or 0)]
        result["errors_below_saturation"] = sum(
            sum(v for k, v in o["statuses"].items() if k != "200") + o["connection_failures"] for o in below
        )
        result["overload_only_503"] = set(overload["statuses"]) <= {"200", "503"}
        result["targets"] = {
            "p99_ms_at_100_single_per_s": next(
                (o["p99_ms"] for o in result["single_requests"] if o["rate"] == 100), None
            ),
            "p99_target_ms": 10,
            "batch_target_histories_per_second": 1500,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(workdir, ignore_errors=True)
    result["machine"] = machine()
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
