"""A stand-in vision-language model server for tests: OpenAI chat completions over real HTTP.

    python tests/_standin_vlm.py SET_DIR PORT_FILE [--model M] [--faults FAULTS.json] [--delay S]

Listens on 127.0.0.1 (a free port, written to PORT_FILE), checks that each request is a
chat-completions body with one user message holding an ``image_url`` part (a base64 PNG data URL)
and a ``text`` part, finds the item by the image and the question, and answers from the set's own
ground truth: true/false, the region name, or the point — Molmo's ``<point x=".." y="..">`` in
percent for even item numbers, plain pixels ``(x, y)`` for odd ones. ``FAULTS.json`` maps item ids
to a misbehaviour:

- ``no_point``: a sentence without a point; ``out_of_image``: a point far outside the picture;
- ``http500``: HTTP 500 every time; ``flaky500``: HTTP 500 the first time, then the right answer;
- ``malformed``: HTTP 200 with a body that is not JSON; ``timeout``: sleeps 30 s before answering;
- ``drop``: closes the connection without a reply the first time, then answers.

Requests per item are counted in ``PORT_FILE.counts.json`` (rewritten after every request).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir", type=Path)
    ap.add_argument("port_file", type=Path)
    ap.add_argument("--model", default="standin")
    ap.add_argument("--faults", type=Path, default=None)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    meta = json.loads((a.set_dir / "meta.json").read_text())
    names = meta["region_names"]
    items = [json.loads(x) for x in (a.set_dir / "items.jsonl").read_text().splitlines()]
    by_image: dict[str, list[dict]] = {}
    for it in items:
        h = hashlib.sha256((a.set_dir / it["image"]).read_bytes()).hexdigest()
        by_image.setdefault(h, []).append(it)
    faults = json.loads(a.faults.read_text()) if a.faults else {}
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def answer(it: dict) -> str:
        if it["type"] in ("rcm_implicit", "relation"):
            return "True." if it["label"] else "False."
        if it["type"] == "rcm_explicit":
            return f"The {names[it['label']]} region."
        u, v = it["label"]
        if int(it["id"].rsplit("-", 1)[1]) % 2 == 0:
            return f'<point x="{100 * u / it["width"]:.3f}" y="{100 * v / it["height"]:.3f}" alt="it">it</point>'
        return f"({u:.2f}, {v:.2f})"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/chat/completions":
                return self._send(404, b'{"error": "not found"}')
            try:
                req = json.loads(raw)
                assert req["model"] == a.model, "model"
                (msg,) = req["messages"]
                assert msg["role"] == "user"
                parts = {p["type"]: p for p in msg["content"]}
                url = parts["image_url"]["image_url"]["url"]
                assert url.startswith("data:image/png;base64,")
                png = base64.b64decode(url.split(",", 1)[1], validate=True)
                text = parts["text"]["text"]
            except (ValueError, KeyError, AssertionError, TypeError) as exc:
                return self._send(400, json.dumps({"error": f"bad request: {exc!r}"}).encode())
            cands = [it for it in by_image.get(hashlib.sha256(png).hexdigest(), []) if it["question"] in text]
            if not cands:
                return self._send(400, b'{"error": "unknown image or question"}')
            it = max(cands, key=lambda x: len(x["question"]))
            with lock:
                counts[it["id"]] = n = counts.get(it["id"], 0) + 1
                tmp = a.port_file.with_suffix(".counts.tmp")
                tmp.write_text(json.dumps(counts))
                tmp.replace(Path(str(a.port_file) + ".counts.json"))
            if a.delay:
                time.sleep(a.delay)
            f = faults.get(it["id"])
            content = answer(it)
            if f == "no_point":
                content = "I cannot see it."
            elif f == "out_of_image":
                content = '<point x="250.0" y="-40.0" alt="it">it</point>'
            elif f == "http500" or (f == "flaky500" and n == 1):
                return self._send(500, b'{"error": "internal"}')
            elif f == "malformed":
                return self._send(200, b'{"choices": [ not json')
            elif f == "timeout":
                time.sleep(30)
            elif f == "drop" and n == 1:
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            body = {"id": "cmpl-standin", "object": "chat.completion", "model": a.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}]}
            return self._send(200, json.dumps(body).encode())

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = a.port_file.with_suffix(".tmp")
    tmp.write_text(str(srv.server_address[1]))
    tmp.replace(a.port_file)
    print(f"listening on {srv.server_address[1]}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
