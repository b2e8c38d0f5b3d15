"""Client of OpenVLA's REST deployment (``vla-scripts/deploy.py`` in openvla/openvla and moojink/openvla-oft).

Protocol: ``POST http://HOST:PORT/act`` with a JSON body whose numpy arrays are json-numpy objects.
- OpenVLA: ``{"image": uint8 (H, W, 3), "instruction": str, "unnorm_key": str?}`` → one action,
  a json-numpy array (7,).
- OpenVLA-OFT: ``{"full_image": ..., "wrist_image": ..., "state": (8,), "instruction": str}`` → a
  list of H actions (each (7,)); the un-normalisation key is fixed when the server starts.
A server-side exception is answered with the JSON string ``"error"`` (status 200).
Servers where json-numpy is unavailable accept ``{"encoded": "<json-numpy text>"}`` and then answer
with a JSON string holding json-numpy text; ``double_encode=True`` speaks that variant.
"""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.error
import urllib.request
from typing import Any

from ..protocol import PolicyFailure
from .retry import call_with_retries
from .wire import json_dumps, json_loads

log = logging.getLogger(__name__)


class OpenVLARestClient:
    """Synchronous client of ``/act`` with timeouts and retries of transport failures.

    Args:
        host, port: the server (OpenVLA's deploy.py defaults to 8000, OFT's to 8777).
        timeout_s: limit per request.
        retries: transport failures tolerated per call (connection refused/reset, timeout, HTTP 5xx).
        backoff_s: first wait between retries; doubles each time.
        double_encode: wrap the payload as ``{"encoded": ...}`` (servers without json-numpy patching).
    """

    def __init__(self, host: str, port: int, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5,
                 double_encode: bool = False, path: str = "/act"):
        self.url = f"http://{host}:{port}{path}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.double_encode = double_encode
        self.reconnects = 0

    def _count_reconnect(self) -> None:
        self.reconnects += 1

    def _once(self, body: bytes) -> Any:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            kind = "disconnected" if exc.code >= 500 else "server_error"
            raise PolicyFailure(kind, f"{self.url} answered HTTP {exc.code} {exc.reason}") from None
        except TimeoutError:
            raise PolicyFailure("timeout", f"{self.url} did not answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise PolicyFailure("timeout", f"{self.url} did not answer within {self.timeout_s:g} s") from None
            kind = "unreachable" if isinstance(reason, ConnectionRefusedError) else "disconnected"
            raise PolicyFailure(kind, f"cannot reach {self.url}: {reason}") from None
        except (http.client.HTTPException, ConnectionError, OSError) as exc:
            raise PolicyFailure("disconnected", f"{self.url} dropped the connection ({type(exc).__name__})") from None
        try:
            out = json_loads(text)
            if self.double_encode and isinstance(out, str) and out != "error":
                out = json_loads(out)
        except (ValueError, TypeError, RecursionError) as exc:  # any way a foreign reply can be malformed
            raise PolicyFailure("bad_reply", f"{self.url}: reply is not json-numpy ({exc})") from None
        if isinstance(out, str):
            raise PolicyFailure("server_error", f"{self.url} answered {out[:100]!r} (see the server's log)")
        return out

    def check(self) -> None:
        """Fail fast (``PolicyFailure('unreachable')``) if nothing listens at HOST:PORT."""
        host, port = self.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=min(self.timeout_s, 10)).close()
        except OSError as exc:
            raise PolicyFailure("unreachable", f"cannot connect to {host}:{port}: {exc}") from None

    def act(self, payload: dict[str, Any]) -> Any:
        """POST one payload, return the decoded reply (array, list of arrays, ...)."""
        body = json_dumps(payload)
        if self.double_encode:
            body = json_dumps({"encoded": body})
        data = body.encode()
        return call_with_retries(lambda: self._once(data), retries=self.retries, backoff_s=self.backoff_s,
                                 label=f"openvla {self.url}", on_retry=self._count_reconnect)
