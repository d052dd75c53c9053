"""Serving under load: the MLflow scoring server of one detector on 127.0.0.1 takes a bounded,
mixed load from this process, and every answer is checked.

Usage: ``python pipelines/load_test_serving.py MODEL [--clients 8] [--requests 500]
[--images FOLDER] [--json OUT]``. ``MODEL`` is a serving SavedModel folder (logged as kdet's
pyfunc model into a throwaway MLflow store first) or an MLflow model URI
(``models:/shapes@champion``, from ``MLFLOW_TRACKING_URI``). ``mlflow models serve
--env-manager local`` serves it; ``--clients`` threads send ``--requests`` requests that
cycle through :data:`KINDS`. A good image must be answered 200 with the detections a direct
``predict`` of the same model gives; every bad request must get a 4xx whose body holds the
words in :data:`KINDS`; the server must still answer ``/ping`` at the end. Prints a table per
kind (requests, status codes, failures, p50/p99 ms) and the server's RSS (its process tree)
after a warm-up request and after the load; exits 1 when any check failed.

Example:
    $ python pipelines/load_test_serving.py data/models/yolov8_shapes/saved_model
    kind             requests  status        failed   p50 ms   p99 ms
    good                  184  200:184            0     41.2    180.3
    ...
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# Request kind -> (expected status class, words the answer's body must hold). Good requests
# appear GOOD_SHARE times per cycle of the bad ones.
KINDS = {
    "good": ("2xx", None),
    "empty_body": ("4xx", "Ensure that input is a valid JSON formatted string"),
    "empty_image": ("4xx", "image 0: image_bytes: empty file"),
    "truncated_jpeg": ("4xx", "image 0: jpeg::Uncompress failed. Invalid JPEG data"),
    "huge_image": ("4xx", "image 0: image_bytes: image too large"),
    "not_an_image": ("4xx", "image 0: image_bytes: not a JPEG, PNG, GIF, BMP or WebP image"),
    "wrong_column": ("4xx", "missing inputs ['image']"),
    "invalid_json": ("4xx", "Ensure that input is a valid JSON formatted string"),
}
GOOD_SHARE = 4
PERCENTILES = ("p50_ms", "p99_ms")
SERVER_START_S = 600  # bounds on waits: a busy machine is slow, never wrong
REQUEST_TIMEOUT_S = 300
NO_TELEMETRY = {"DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def png_bomb(side: int = 100_000) -> bytes:
    """A 100 KB PNG declaring ``side x side`` RGB pixels (30 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = compressor.compress(b"\0" * (1 + 3 * side) * 4) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def good_images(folder: str | None) -> list[bytes]:
    """The JPEG/PNG files of ``folder`` (at most 8), else four generated JPEGs."""
    import cv2

    if folder:
        files = sorted(
            p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        if not files:
            raise SystemExit(f"--images {folder}: no .jpg, .jpeg or .png file")
        return [p.read_bytes() for p in files[:8]]
    rng = np.random.default_rng(0)
    images = []
    for height, width in ((64, 64), (120, 160), (480, 640), (37, 91)):
        ok, data = cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), np.uint8))
        assert ok, "OpenCV cannot encode JPEG"
        images.append(data.tobytes())
    return images


def request_body(kind: str, image: bytes) -> bytes:
    """The HTTP body of one request of ``kind`` (``image``: the good image to send)."""
    if kind == "empty_body":
        return b""
    if kind == "invalid_json":
        return b'{"dataframe_split": {"columns": ["image"], "data": [['
    payload = {
        "empty_image": b"",
        "truncated_jpeg": _jpeg()[: len(_jpeg()) * 9 // 10],
        "huge_image": png_bomb(),
        "not_an_image": b"this is not a picture\n",
    }.get(kind, image)
    column = "picture" if kind == "wrong_column" else "image"
    cell = base64.b64encode(payload).decode()
    return json.dumps({"dataframe_split": {"columns": [column], "data": [[cell]]}}).encode()


@functools.cache
def _jpeg() -> bytes:
    """A JPEG to cut short (the good images may be PNGs)."""
    return good_images(None)[1]


def post(port: int, body: bytes) -> tuple[int, bytes, float]:
    """POST ``body`` to ``/invocations``; ``(status, answer, seconds)``; status 0: no answer."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        status, answer = response.status, response.read()
    except OSError as err:  # refused, reset, timed out: the server did not answer
        status, answer = 0, f"{type(err).__name__}: {err}".encode()
    finally:
        connection.close()
    return status, answer, time.perf_counter() - start


def same_detections(answer: list[dict], expected: list[dict]) -> bool:
    """Whether the served rows equal the direct ``predict``'s (floats to 1e-5)."""
    if len(answer) != len(expected):
        return False
    for got, want in zip(answer, expected, strict=True):
        if set(got) != set(want):
            return False
        for key, value in want.items():
            if isinstance(value, float):
                if not np.isclose(got[key], value, rtol=1e-5, atol=1e-4):
                    return False
            elif got[key] != value:
                return False
    return True


def check(kind: str, status: int, answer: bytes, expected: list[dict] | None) -> str | None:
    """Why the answer to a ``kind`` request is wrong, or ``None``."""
    status_class, words = KINDS[kind]
    if status == 0:
        return f"no answer: {answer.decode(errors='replace')}"
    if f"{status // 100}xx" != status_class:
        return f"HTTP {status}, expected {status_class}: {answer[:300]!r}"
    if words is not None and words not in answer.decode(errors="replace"):
        return f"HTTP {status} without {words!r}: {answer[-300:]!r}"
    if kind == "good" and not same_detections(json.loads(answer)["predictions"], expected):
        return f"detections differ from a direct predict: {answer[:300]!r}"
    return None


def server_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and all its descendants, in MB."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def scoring_server(model_uri: str, env: dict, log: Path):
    """``mlflow models serve`` of ``model_uri`` on a free loopback port; yields
    ``(process, port)`` once ``/ping`` answers; stops the whole process group after."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _pings(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the scoring server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _pings(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def load_test(model_uri: str, env: dict, workdir: Path, *, clients, requests, images) -> dict:
    """Serve ``model_uri``, send the load, check every answer; return the figures."""
    import mlflow
    import pandas as pd

    direct = mlflow.pyfunc.load_model(model_uri)
    expected = [direct.predict(pd.DataFrame({"image": [i]})).to_dict("records") for i in images]
    cycle = ["good"] * GOOD_SHARE + [kind for kind in KINDS if kind != "good"]
    plan = [(cycle[n % len(cycle)], n % len(images)) for n in range(requests)]

    def send(item):
        kind, which = item
        status, answer, seconds = post(port, request_body(kind, images[which]))
        return kind, status, seconds, check(kind, status, answer, expected[which])

    with scoring_server(model_uri, env, workdir / "server.log") as (server, port):
        warm_up = send(("good", 0))
        rss_before = server_rss_mb(server.pid)
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(send, plan))
        rss_after = server_rss_mb(server.pid)
        alive = server.poll() is None and _pings(port)
    failures = [f"warm-up: {warm_up[3]}"] if warm_up[3] else []
    kinds = {}
    for kind in KINDS:
        mine = [r for r in results if r[0] == kind]
        seconds = np.array([r[2] for r in mine]) * 1000
        kinds[kind] = {
            "requests": len(mine),
            "status": dict(sorted(Counter(r[1] for r in mine).items())),
            "failed": sum(r[3] is not None for r in mine),
            "p50_ms": float(np.percentile(seconds, 50)) if mine else None,
            "p99_ms": float(np.percentile(seconds, 99)) if mine else None,
        }
        failures += [f"{kind}: {r[3]}" for r in mine if r[3] is not None][:3]
    if not alive:
        failures.append("the scoring server no longer answers /ping after the load")
    every = np.array([r[2] for r in results]) * 1000
    return {
        "model": model_uri,
        "clients": clients,
        "requests": requests,
        "kinds": kinds,
        "p50_ms": float(np.percentile(every, 50)),
        "p99_ms": float(np.percentile(every, 99)),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "server_alive": alive,
        "failures": failures,
    }


def print_table(figures: dict) -> None:
    print(f"{'kind':16} {'requests':>8}  {'status':12} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, row in figures["kinds"].items():
        status = ",".join(f"{code}:{n}" for code, n in row["status"].items())
        p50, p99 = (
            f"{row[k]:8.1f}" if row[k] is not None else f"{'-':>8}" for k in ("p50_ms", "p99_ms")
        )
        print(f"{kind:16} {row['requests']:8d}  {status:12} {row['failed']:6d} {p50} {p99}")
    print(
        f"all: {figures['requests']} requests from {figures['clients']} clients, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms; server RSS "
        f"{figures['rss_mb_before']} MB after warm-up, {figures['rss_mb_after']} MB after the "
        f"load; alive: {figures['server_alive']}"
    )
    for failure in figures["failures"]:
        print(f"FAILED {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="serving SavedModel folder or MLflow model URI")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=500, help="requests in all (default 500)")
    parser.add_argument("--images", help="folder of good images (default: generated JPEGs)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdet-load-") as scratch:
        workdir = Path(scratch)
        env = {**os.environ, **NO_TELEMETRY}
        # As in an activated venv: MLflow starts `uvicorn` from PATH.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        model_uri = args.model
        if Path(args.model).is_dir():
            model_uri = log_saved_model(args.model, workdir)
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        figures = load_test(
            model_uri,
            env,
            workdir,
            clients=args.clients,
            requests=args.requests,
            images=good_images(args.images),
        )
    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 1 if figures["failures"] else 0


def log_saved_model(saved_model: str, workdir: Path) -> str:
    """Log ``saved_model`` as kdet's pyfunc model in a store under ``workdir``; its URI."""
    from kdet import serving, tracking

    os.environ["KDET_PROJECT_ROOT"] = str(workdir)
    with tracking.start_run("load_test", run_name="load_test"):
        return serving.log_detector(saved_model).model_uri


if __name__ == "__main__":
    sys.exit(main())
