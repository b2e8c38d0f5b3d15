"""Ask a served vision-language model a probing set: an OpenAI-compatible chat-completions client.

``ask_probe_set(directory, endpoint, model, out)`` sends every item of a probing set (its image as a
base64 PNG data URL in an ``image_url`` content part, then its question as a ``text`` part) to
``POST <endpoint>/chat/completions`` — the API vLLM, SGLang, llama.cpp's server and most hosted
services expose for Molmo, Qwen-VL and the like — and appends the answers to a JSONL file that
``bomb-data probe score`` reads.

- Bounded concurrency (a thread pool of ``concurrency`` requests in flight).
- Retries with exponential backoff on HTTP 5xx, 408, 429, timeouts and connection errors.
- An item that still fails (a timeout or server error after the retries, a 4xx, a reply that is
  not the chat-completions JSON) is written with ``"error": <reason>`` and scored as a miss with
  that reason. An endpoint that cannot be reached at all stops the run with one error line instead
  (nothing would be learnt from a file of ``connection`` errors); what was answered stays.
- Resumable: answers are appended in the set's item order (an answer that arrives early waits for
  the ones before it), one ``write`` per line, so a killed run leaves a prefix of the uninterrupted
  run's file plus at most one torn line; a rerun drops the torn line and asks only the items
  without a line. Killed and resumed, the file has the same bytes as an uninterrupted run's (for a
  deterministic server). ``<out>.ask.json`` records the model and the set, and a rerun with another
  model or set into the same file is refused.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.format import atomic_write_text

log = logging.getLogger(__name__)

#: Reasons an item's request can fail (the ``error`` of its line, the ``reason`` of its miss).
ASK_ERRORS = ("timeout", "server_error", "http_error", "bad_reply")
RETRY_STATUS = {408, 429}


class Unreachable(ConfigError):
    """The endpoint cannot be reached (connection refused, unknown host) after the retries."""


def _load_set(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from .probe import ITEMS_FILE, META_FILE

    try:
        meta = json.loads((directory / META_FILE).read_text())
        items = [json.loads(x) for x in (directory / ITEMS_FILE).read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: not a probing set ({type(exc).__name__})") from None
    return meta, items


def read_answers(path: Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """The answer lines of ``path`` by item id (the last line of an id wins).

    A last line without its newline (a run killed while writing) is ignored, and with ``repair`` cut
    off the file. A complete line that is not a JSON object with an ``id`` raises ``ConfigError``.
    """
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with open(path, "r+b") as f:
            f.truncate(end)
    out: dict[str, dict[str, Any]] = {}
    for no, line in enumerate(data[:end].decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = row
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{no}: expected a JSON object with 'id'; not an answers file "
                              f"(use another --out)") from None
    return out


def endpoint_url(endpoint: str) -> str:
    """``http://HOST:PORT/v1`` (or a URL already ending in ``/chat/completions``) → the POST URL."""
    e = endpoint.strip().rstrip("/")
    if not e.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint: expected http://HOST:PORT/v1, given {endpoint!r}")
    return e if e.endswith("/chat/completions") else e + "/chat/completions"


def build_request(item: dict[str, Any], image_png: bytes, model: str, template: str, max_tokens: int,
                  temperature: float) -> dict[str, Any]:
    """The chat-completions body for one item: one user message with the image and the question."""
    try:
        text = template.format(question=item["question"], width=item["width"], height=item["height"],
                               type=item["type"])
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--prompt-template: {exc!r}; fields are {{question}}, {{width}}, {{height}}, "
                          f"{{type}}") from None
    url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
    return {"model": model, "max_tokens": max_tokens, "temperature": temperature,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": text}]}]}


def reply_text(body: bytes) -> str:
    """The assistant's text of a chat-completions reply. Raises ``ValueError`` if it is not one."""
    d = json.loads(body.decode("utf-8"))
    content = d["choices"][0]["message"]["content"]
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError("content is not text")
    return content


class _Pool:
    """``concurrency`` daemon threads running submitted calls. Daemon threads, unlike
    ``ThreadPoolExecutor``'s, do not hold the process at exit: Ctrl-C or an unreachable endpoint
    ends the run at once instead of after the requests in flight time out."""

    def __init__(self, n: int):
        self.q: queue.Queue[tuple[Callable[[Any], Any], Any, Future[Any]] | None] = queue.Queue()
        self.threads = [threading.Thread(target=self._work, name=f"probe-ask-{i}", daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            fn, arg, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(arg))
            except BaseException as exc:  # handed to the main thread by Future.result()
                fut.set_exception(exc)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.q.put((fn, arg, fut))
        return fut

    def shutdown(self) -> None:
        for _ in self.threads:
            self.q.put(None)


class _Client:
    def __init__(self, url: str, timeout: float, retries: int, backoff: float, api_key: str | None,
                 stop: threading.Event):
        self.url, self.timeout, self.retries, self.backoff, self.stop = url, timeout, retries, backoff, stop
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.stats = {"requests": 0, "retries": 0}
        self._lock = threading.Lock()

    def ask(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """(answer, None) or (None, error reason); raises ``Unreachable``."""
        data = json.dumps(body).encode()
        last = ("timeout", "")
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.stats["retries"] += 1
                if self.stop.wait(self.backoff * 2 ** (attempt - 1)):
                    break
            if self.stop.is_set():
                break
            with self._lock:
                self.stats["requests"] += 1
            req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as exc:
                if exc.code >= 500 or exc.code in RETRY_STATUS:
                    last = ("server_error", f"HTTP {exc.code}")
                    continue
                return None, "http_error"
            except TimeoutError:
                last = ("timeout", "")
                continue
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    last = ("timeout", "")
                    continue
                if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) or \
                        "RemoteDisconnected" in type(exc).__name__:
                    last = ("server_error", "connection dropped")
                    continue
                last = ("unreachable", str(reason))
                continue
            try:
                return reply_text(raw), None
            except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
                return None, "bad_reply"
        if last[0] == "unreachable":
            raise Unreachable(f"--endpoint {self.url}: cannot connect ({last[1]}) after {self.retries + 1} "
                              f"attempts; answers so far are kept, rerun to resume")
        return None, last[0]


def ask_probe_set(directory: Path, endpoint: str, model: str, out: Path, *, concurrency: int = 4,
                  retries: int = 3, timeout: float = 60.0, backoff: float = 0.5, max_tokens: int = 128,
                  temperature: float = 0.0, template: str = "{question}", types: tuple[str, ...] | None = None,
                  limit: int | None = None, retry_failed: bool = False, api_key_env: str | None = None,
                  progress: bool | None = None) -> dict[str, Any]:
    """Ask ``model`` at ``endpoint`` every item of the probing set in ``directory``; answers go to ``out``.

    Args:
        directory: a probing set (``bomb-data probe make``).
        endpoint: the server's OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8000/v1``.
        model: the ``model`` field of the requests (the name the server serves).
        out: the answers file (JSONL, appended; ``bomb-data probe score DIR OUT`` reads it).
        concurrency: requests in flight at once.
        retries: extra attempts after a timeout, HTTP 5xx/408/429 or a connection error.
        timeout: seconds per request.
        backoff: seconds before the first retry, doubled for each further one.
        template: the text sent, with ``{question}``, ``{width}``, ``{height}``, ``{type}``.
        types: only items of these types (default: all).
        limit: only the first ``limit`` items (after ``types``).
        retry_failed: ask again the items whose line is an error (a new line is appended).
        api_key_env: name of an environment variable holding a bearer token.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        A summary (also written to ``<out>.ask.json``): items, asked now, answered, errors by reason,
        requests and retries, seconds.

    Raises:
        ConfigError: not a probing set, a bad endpoint or template, ``out`` made for another model or
            set, or an endpoint that cannot be reached.
    """
    from tqdm import tqdm

    directory, out = Path(directory), Path(out)
    meta, items = _load_set(directory)
    url = endpoint_url(endpoint)
    if concurrency < 1 or retries < 0 or timeout <= 0:
        raise ConfigError("--concurrency >= 1, --retries >= 0 and --timeout > 0 expected")
    if types:
        from .probe import TYPES

        unknown = set(types) - set(TYPES)
        if unknown:
            raise ConfigError(f"--types: unknown {sorted(unknown)}")
        items = [it for it in items if it["type"] in types]
    if limit is not None:
        items = items[:limit]
    build_request({"question": "", "width": 0, "height": 0, "type": ""}, b"", model, template, max_tokens,
                  temperature)  # a bad --prompt-template fails here, before anything is written
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env: environment variable {api_key_env} is not set")
    # the record of what this file answers: a rerun must ask the same model the same questions
    record = {"format": "bomb-data-probe-answers", "version": 1, "set": str(directory),
              "items_sha256": meta.get("items_sha256"), "model": model, "template": template,
              "max_tokens": max_tokens, "temperature": temperature}
    side = Path(str(out) + ".ask.json")
    if out.exists() and out.stat().st_size:
        try:
            prev = json.loads(side.read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{out} exists without a readable {side.name}: not written by probe ask "
                              f"(use another --out)") from None
        diff = [k for k in ("items_sha256", "model", "template", "max_tokens", "temperature")
                if prev.get(k) != record[k]]
        if diff:
            raise ConfigError(f"{out} holds answers for another {'/'.join(diff)} "
                              f"({', '.join(f'{k}={prev.get(k)!r}' for k in diff)}); use another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_answers(out, repair=True)
    todo = [it for it in items if it["id"] not in done or (retry_failed and done[it["id"]].get("error"))]
    _write_side(side, {**record, "endpoint": url, "status": "running"})
    stop = threading.Event()
    client = _Client(url, timeout, retries, backoff, api_key, stop)
    images: dict[str, bytes] = {}
    img_lock = threading.Lock()

    def image(rel: str) -> bytes:
        with img_lock:
            if rel not in images:
                if len(images) > 64:
                    images.clear()
                images[rel] = (directory / rel).read_bytes()
            return images[rel]

    def one(it: dict[str, Any]) -> dict[str, Any]:
        body = build_request(it, image(it["image"]), model, template, max_tokens, temperature)
        answer, err = client.ask(body)
        return {"id": it["id"], "answer": answer if answer is not None else "", **({"error": err} if err else {})}

    errors: dict[str, int] = {}
    written = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="item", desc="probe ask",
               disable=(not progress) if progress is not None else None, leave=False)
    pool = _Pool(concurrency)
    try:
        with open(out, "a", encoding="utf-8") as f:
            futures: list[Future[dict[str, Any]]] = []
            nxt = 0  # next future to write: answers go to the file in item order
            window = max(2 * concurrency, 8)
            it_todo = iter(todo)
            while True:
                while len(futures) - nxt < window and not stop.is_set():
                    it = next(it_todo, None)
                    if it is None:
                        break
                    futures.append(pool.submit(one, it))
                if nxt == len(futures):
                    break
                row = futures[nxt].result()  # raises Unreachable
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()
                nxt += 1
                written += 1
                if row.get("error"):
                    errors[row["error"]] = errors.get(row["error"], 0) + 1
                bar.update(1)
    except BaseException:
        stop.set()
        pool.shutdown()
        bar.close()
        _write_side(side, {**record, "endpoint": url, "status": "interrupted", "written_this_run": written})
        raise
    pool.shutdown()
    bar.close()
    seconds = time.perf_counter() - t0
    final = read_answers(out)
    all_errors: dict[str, int] = {}
    for it in items:
        e = (final.get(it["id"]) or {}).get("error")
        if e:
            all_errors[e] = all_errors.get(e, 0) + 1
    summary = {**record, "endpoint": url, "status": "complete", "items": len(items), "asked_this_run": len(todo),
               "answered": sum(1 for it in items if it["id"] in final and not final[it["id"]].get("error")),
               "errors_this_run": errors, "errors": all_errors, **client.stats, "seconds": round(seconds, 3),
               "items_per_s": round(len(todo) / seconds, 2) if seconds and todo else None}
    _write_side(side, summary)
    return {**summary, "out": str(out)}


def _write_side(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
