"""Client of the openpi websocket policy protocol (``openpi_client.WebsocketClientPolicy``).

Protocol (``openpi/serving/websocket_policy_server.py``): the client connects to
``ws://HOST:PORT`` (no compression, no size limit); the server first sends its metadata (a
msgpack-numpy map); then each client message is one observation (msgpack-numpy map) and each
reply is a map with ``"actions"`` (H, D) (plus ``"server_timing"``). A server-side exception is
reported as a *text* frame with the traceback, after which the server closes the connection.

The official client waits forever for a server and has no timeouts; this one connects with a
timeout, retries transport failures with exponential backoff (reconnecting, since openpi servers
keep no episode state), and turns every problem into a one-line ``PolicyFailure``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..protocol import PolicyFailure
from .retry import call_with_retries
from .wire import packb, unpackb

log = logging.getLogger(__name__)


class OpenPIWebsocketClient:
    """Synchronous openpi websocket client with timeouts, retries and reconnection.

    Args:
        host: host name or address.
        port: TCP port (openpi's ``serve_policy.py`` uses 8000).
        timeout_s: limit for connecting and for each reply.
        retries: transport failures tolerated per call before giving up (each reconnects).
        backoff_s: first wait between retries; doubles each time.
        api_key: sent as ``Authorization: Api-Key ...`` like the official client.
    """

    def __init__(self, host: str, port: int, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5,
                 api_key: str | None = None):
        self.uri = f"ws://{host}:{port}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.api_key = api_key
        self._ws: Any = None
        self._stack: contextlib.ExitStack | None = None
        self.metadata: dict[str, Any] = {}
        self.reconnects = 0

    # ----------------------------------------------------------------------------------- connection
    def connect(self) -> dict[str, Any]:
        """Open the connection and read the server metadata. Raises ``PolicyFailure``."""
        from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException
        from websockets.sync.client import connect

        self.close()
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        stack = contextlib.ExitStack()
        try:  # entered as a context manager (websockets >= 17 deprecates bare connect())
            ws = stack.enter_context(connect(self.uri, compression=None, max_size=None, open_timeout=self.timeout_s,
                                             additional_headers=headers, close_timeout=2))
        except (ConnectionRefusedError, OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise PolicyFailure("unreachable", f"cannot connect to {self.uri}: {exc or type(exc).__name__}") from None
        try:
            first = ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            ws.close()
            raise PolicyFailure("timeout", f"{self.uri} sent no metadata within {self.timeout_s:g} s") from None
        except (WebSocketException, OSError) as exc:
            raise PolicyFailure("disconnected", f"{self.uri} closed before sending metadata ({exc})") from None
        if isinstance(first, str):
            ws.close()
            raise PolicyFailure("server_error", f"{self.uri}: {_last_line(first)}")
        try:
            meta = unpackb(first)
        except Exception as exc:  # any decoding problem of a foreign message
            ws.close()
            raise PolicyFailure("bad_reply", f"{self.uri}: metadata is not msgpack ({exc})") from None
        self._ws, self._stack = ws, stack
        self.metadata = meta if isinstance(meta, dict) else {"metadata": meta}
        return self.metadata

    def _count_reconnect(self) -> None:
        self.reconnects += 1

    def close(self) -> None:
        if self._ws is not None:
            try:
                (self._stack.close if self._stack is not None else self._ws.close)()
            except Exception:  # closing a broken connection may fail; nothing to do
                pass
            self._ws, self._stack = None, None

    # ------------------------------------------------------------------------------------- requests
    def _once(self, data: bytes) -> Any:
        from websockets.exceptions import WebSocketException

        if self._ws is None:
            self.connect()
        try:
            self._ws.send(data)
            reply = self._ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            self.close()
            raise PolicyFailure("timeout", f"{self.uri} did not answer within {self.timeout_s:g} s") from None
        except (WebSocketException, OSError) as exc:
            self.close()
            raise PolicyFailure("disconnected", f"{self.uri} dropped the connection ({type(exc).__name__})") from None
        if isinstance(reply, str):  # openpi servers send the traceback as text, then close
            self.close()
            raise PolicyFailure("server_error", f"{self.uri}: {_last_line(reply)}")
        try:
            return unpackb(reply)
        except Exception as exc:  # malformed bytes from the server
            raise PolicyFailure("bad_reply", f"{self.uri}: reply is not msgpack ({exc})") from None

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Send one observation, return the decoded reply map.

        Transport failures (refused, dropped, timed out) are retried ``retries`` times with
        exponential backoff; a server-side error or an undecodable reply is not retried.
        """
        data = packb(observation)
        reply = call_with_retries(lambda: self._once(data), retries=self.retries, backoff_s=self.backoff_s,
                                  label=f"openpi {self.uri}", on_retry=self._count_reconnect)
        if not isinstance(reply, dict):
            raise PolicyFailure("bad_reply", f"{self.uri}: expected a map with 'actions', got {type(reply).__name__}")
        return reply


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "empty error message")[:300]
