"""Reference policy servers speaking the openpi websocket and OpenVLA / OpenVLA-OFT REST protocols.

They wrap any in-process policy (``expert``, ``random``, ``noop``, ``python:module:factory``) so
users can check an evaluation setup end to end without a GPU, and so tests exercise the real
clients over real sockets. ``Faults`` makes a server misbehave on purpose (drop connections,
answer NaN or the wrong shape, answer slowly).

    python -m bomb_data.evaluate.servers openpi --policy expert --port 8000
    bomb-data eval --policy openpi://127.0.0.1:8000 --send-privileged     # expert needs privileged state

Served policies see the observation exactly as the client sends it; the expert reads the
``bomb/privileged`` keys that ``--send-privileged`` adds. Replies follow the protocol: openpi
``{"actions": (H, 7)}``; OpenVLA one action (7,); OFT a list of actions. ``gripper`` encodes the
canonical gripper into the convention the client will decode (``openvla`` for OpenVLA servers).
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .adapt import encode_gripper
from .clients.wire import json_dumps, json_loads, packb, unpackb
from .protocol import EpisodeStart, policy_seed

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Deliberate misbehaviour, counted over all requests a server receives.

    Attributes:
        drop_after: drop the connection without answering request number ``drop_after`` (0-based).
        drop_always: keep dropping every request from then on (else only once: a "restart").
        nan_after: from this request on, answer actions full of NaN.
        wrong_shape_after: from this request on, answer actions of shape (H, 5).
        delay_s: sleep this long before each answer.
        malformed: from request ``malformed_after`` on, answer this malformed reply (a key of
            ``MALFORMED``), bytes a buggy or hostile server could send.
    """

    drop_after: int | None = None
    drop_always: bool = False
    nan_after: int | None = None
    wrong_shape_after: int | None = None
    delay_s: float = 0.0
    malformed: str | None = None
    malformed_after: int = 0


def _np_map(data: bytes, dtype: Any, shape: list[int]) -> dict[bytes, Any]:
    m: dict[bytes, Any] = {b"__ndarray__": True, b"data": data, b"shape": shape}
    if dtype is not None:
        m[b"dtype"] = dtype
    return m


def _json_np(data: bytes, dtype: Any, shape: list[int]) -> dict[str, Any]:
    import base64

    m: dict[str, Any] = {"__numpy__": base64.b64encode(data).decode(), "shape": shape}
    if dtype is not None:
        m["dtype"] = dtype
    return m


#: Malformed action arrays, as (raw bytes, dtype or None, shape): the servers encode them without
#: any check, in their protocol's array format.
MALFORMED: dict[str, tuple[bytes, Any, list[int]]] = {
    "object_dtype": (bytes(range(56)), "|O", [1, 7]),   # pointers made of the sender's bytes
    "string_dtype": (b"1.0 " * 7, "|S4", [1, 7]),       # numbers as text
    "no_dtype": (bytes(28), None, [1, 7]),
    "empty_scalar": (b"", "<f4", []),
    "short_data": (bytes(8), "<f4", [1, 7]),            # fewer bytes than the shape needs
}


class ServedPolicy:
    """An in-process policy behind a server: one instance per episode (keyed by ``bomb/seed`` when
    present), thread-safe, replies encoded in the server's gripper convention.

    Args:
        factory: makes a fresh policy (``bomb_data.evaluate.policies`` object).
        gripper: output gripper convention (``canonical`` for openpi, ``openvla`` for OpenVLA servers).
        horizon: actions per reply (the policy is called this many times on the same observation
            unless it returns a chunk itself).
    """

    def __init__(self, factory: Callable[[], Any], gripper: str = "canonical", horizon: int = 1,
                 faults: Faults | None = None):
        self.factory = factory
        self.gripper = gripper
        self.horizon = horizon
        self.faults = faults or Faults()
        self.requests = 0
        self._lock = threading.Lock()
        self._policies: OrderedDict[Any, Any] = OrderedDict()
        self.max_policies = 64  # episodes whose policy state is kept (least recently started dropped)
        self.last_timing: dict[str, float] | None = None

    def _policy_for(self, obs: dict[str, Any]) -> Any:
        eid = obs.get("bomb/episode_id")  # opt-in, opaque: the policy seed in hex (docs/evaluation.md)
        key = ("id", str(eid)) if eid is not None else obs.get("bomb/seed")
        p = self._policies.get(key)
        if p is None:
            p = self.factory()
            # bomb/seed (sent with the privileged state) is the episode seed; the served policy gets
            # the one-way policy seed, as in process
            seed = _seed_of(eid) if eid is not None else policy_seed(int(key)) if key is not None else 0
            p.reset(EpisodeStart(f"{seed:016x}", seed,
                                 str(obs.get("prompt") or obs.get("instruction") or obs.get("task") or "")))
            self._policies[key] = p
            while len(self._policies) > self.max_policies:
                self._policies.popitem(last=False)
        return p

    def next_request(self) -> tuple[int, str | None]:
        """Count a request; return its number and the fault to apply (``drop``/``nan``/``shape``)."""
        with self._lock:
            n = self.requests
            self.requests += 1
        f = self.faults
        if f.delay_s:
            time.sleep(f.delay_s)
        if f.drop_after is not None and (n == f.drop_after or (f.drop_always and n > f.drop_after)):
            return n, "drop"
        if f.nan_after is not None and n >= f.nan_after:
            return n, "nan"
        if f.wrong_shape_after is not None and n >= f.wrong_shape_after:
            return n, "shape"
        if f.malformed is not None and n >= f.malformed_after:
            return n, "malformed"
        return n, None

    def infer(self, obs: dict[str, Any], fault: str | None = None) -> np.ndarray:
        """Actions (H, 7) for ``obs`` in the server's gripper convention."""
        with self._lock:
            p = self._policy_for(obs)
            out = np.asarray(p.act(obs), np.float64)
            self.last_timing = getattr(p, "last_timing", None)  # a policy's own breakdown (lerobot:)
        chunk = out[None] if out.ndim == 1 else out
        if chunk.shape[0] < self.horizon:  # repeat the last action: a closed-loop policy has no future
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.horizon - chunk.shape[0], 0)])
        chunk = chunk.copy()
        chunk[:, 6] = encode_gripper(chunk[:, 6], self.gripper)
        if fault == "nan":
            chunk[:] = np.nan
        elif fault == "shape":
            chunk = chunk[:, :5]
        return chunk.astype(np.float32)


def _seed_of(episode_id: Any) -> int:
    """The policy seed an episode id carries (16 hex digits), or a stable hash of a foreign id."""
    try:
        return int(str(episode_id), 16) & (2**63 - 1)
    except ValueError:
        import zlib

        return zlib.crc32(str(episode_id).encode())


# ---------------------------------------------------------------------------------------- openpi
class OpenPIServer:
    """openpi-protocol websocket server in a background thread (``with`` stops it).

    Args:
        served: the policy to serve.
        host, port: where to listen (port 0 picks a free port; see ``.port``).
        metadata: sent to each client first.
    """

    def __init__(self, served: ServedPolicy, host: str = "127.0.0.1", port: int = 0,
                 metadata: dict[str, Any] | None = None):
        from websockets.sync.server import serve

        self.served = served
        self.metadata = metadata or {"server": "bomb-data reference", "protocol": "openpi"}
        self._server = serve(self._handler, host, port, compression=None, max_size=None)
        self.host, self.port = host, self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="openpi-server")

    def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        ws.send(packb(self.metadata))
        while True:
            try:
                msg = ws.recv()
            except ConnectionClosed:
                return
            _, fault = self.served.next_request()
            if fault == "drop":
                ws.socket.shutdown(socket.SHUT_RDWR)  # abrupt, no close frame: like a crashed server
                return
            if fault == "malformed":
                ws.send(msgpack.packb({"actions": _np_map(*MALFORMED[self.served.faults.malformed or ""])}))
                continue
            try:
                t0 = time.monotonic()
                actions = self.served.infer(unpackb(msg), fault)
                timing = {"infer_ms": (time.monotonic() - t0) * 1000, **(self.served.last_timing or {})}
                ws.send(packb({"actions": actions, "server_timing": timing}))
            except ConnectionClosed:
                return
            except Exception:  # protocol: traceback as a text frame, then close
                ws.send(traceback.format_exc())
                ws.close()
                return

    def start(self) -> OpenPIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenPIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------- openvla
class OpenVLAServer:
    """OpenVLA REST ``/act`` server (json-numpy) in a background thread; ``oft=True`` answers chunks.

    Accepts plain json-numpy bodies and the ``{"encoded": ...}`` double-encoded variant, like
    ``vla-scripts/deploy.py``; a failure is answered with the JSON string ``"error"``.
    """

    def __init__(self, served: ServedPolicy, host: str = "127.0.0.1", port: int = 0, oft: bool = False):
        served_ = served

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("openvla server: " + fmt, *args)

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                if self.path.rstrip("/") != "/act":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                _, fault = served_.next_request()
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                double = False
                if fault == "malformed":
                    reply = _json_np(*MALFORMED[served_.faults.malformed or ""])
                    text = json.dumps([reply] if oft else reply)  # OFT answers a list of actions
                    self._answer(text.encode())
                    return
                try:
                    payload = json_loads(body)
                    if isinstance(payload, dict) and "encoded" in payload:
                        double, payload = True, json_loads(payload["encoded"])
                    chunk = served_.infer(payload, fault)
                    reply: Any = list(chunk) if oft else chunk[0]
                    text = json_dumps(json_dumps(reply) if double else reply)
                except Exception:  # as deploy.py: log, answer "error"
                    log.error("openvla server: %s", traceback.format_exc())
                    text = json.dumps("error")
                self._answer(text.encode())

            def _answer(self, data: bytes) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
                    self.close_connection = True
                    log.debug("openvla server: client left before the reply")

        self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="openvla-server")

    def start(self) -> OpenVLAServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenVLAServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def served_policy(spec: str, protocol: str, horizon: int | None = None, faults: Faults | None = None,
                  cfg: Any = None) -> ServedPolicy:
    """A ``ServedPolicy`` for an in-process spec, with the protocol's gripper convention and horizon."""
    from .policies import make_policy, parse_policy_spec

    ps = parse_policy_spec(spec)
    if ps.remote:
        raise ValueError(f"cannot serve a remote policy ({spec})")
    gripper = "canonical" if protocol == "openpi" else "openvla"
    h = horizon or {"openpi": 1, "openvla": 1, "openvla-oft": 1}[protocol]
    return ServedPolicy(lambda: make_policy(ps, cfg), gripper=gripper, horizon=h, faults=faults)


def main(argv: list[str] | None = None) -> None:
    """``python -m bomb_data.evaluate.servers PROTOCOL --policy SPEC --port N``: serve until Ctrl-C."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("protocol", choices=["openpi", "openvla", "openvla-oft"])
    ap.add_argument("--policy", default="expert")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--horizon", type=int, default=None, help="actions per reply")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from ..config import load_config

    served = served_policy(a.policy, a.protocol, a.horizon, cfg=load_config())
    srv = (OpenPIServer(served, a.host, a.port) if a.protocol == "openpi"
           else OpenVLAServer(served, a.host, a.port, oft=a.protocol == "openvla-oft"))
    log.info("serving %s over %s on %s:%d", a.policy, a.protocol, srv.host, srv.port)
    srv.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
