"""A fake OpenAI / Anthropic / Gemini upstream: a real HTTP/1.1 server on 127.0.0.1.

It runs in its own thread with its own event loop, so sync tests, async tests, live-server
browser tests and benchmarks can all use it:

    with FakeUpstream() as fake:
        fake.script("openai", [Fault.error("rate_limited", retry_after="2"), Fault.ok()])
        ... call fake.base_url_for("openai") ...
        assert fake.requests[0].json["model"] == "gpt-4o-mini"

Paths served: POST /v1/chat/completions (OpenAI), POST /v1/messages (Anthropic),
POST /v1beta/models/{model}:generateContent and :streamGenerateContent?alt=sse (Gemini),
GET /v1/models and GET /v1beta/models.

What answers a request: the first queued fault scripted for (protocol, model), then
(any protocol, model), then (protocol, any model), then (any, any); if every queue is
empty, the default set the same way (a Fault, or a callable taking the RecordedRequest);
else Fault.ok(). Keep-alive is honoured and nothing sleeps unless a fault asks for it.

Beyond text: Fault.tool_calls([FakeToolCall(...)]), Fault.json(value, as_tool=...) and
Fault.thinking_answer(...) (or thinking= on ok / tool_calls) render in each protocol's own
shape (wire_tools.py); tests/fakes/probe.py posts raw requests and reassembles streams.
A transport fault can carry them: dataclasses.replace(Fault.tool_calls(...), kind="truncated").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .faults import DEFAULT_TEXT, Fault
from .http11 import BadRequest, RawRequest, head, read_request
from .player import Exchange, play
from .routes import PROTOCOLS, RecordedRequest, models_payload, route, sent_key
from .wire import Reply, pieces_of

_OK = Fault.ok()
DefaultFault = Fault | Callable[[RecordedRequest], Fault]


_refused: socket.socket | None = None


def refused_port() -> int:
    """A port where connections are refused: bound (so nobody else takes it), never listening."""
    global _refused
    if _refused is None:
        _refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _refused.bind(("127.0.0.1", 0))
    return _refused.getsockname()[1]


def base_url_for(kind: str, root: str) -> str:
    return root + "/v1" if kind in ("openai", "openai_compatible") else root


class FakeUpstream:
    def __init__(
        self, *, models: Iterable[str] = ("fake-model",), port: int = 0, record_limit: int = 10_000
    ) -> None:
        self.models = list(models)
        self.port = port  # 0: an ephemeral port, known once started
        self.errors: list[str] = []  # the fake's own bugs; tests assert it stays empty
        self.connections_opened = 0
        # GET path -> (content-type, body): files the fake serves, e.g. images a request links to
        self.files: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str | None, str | None], deque[Fault]] = {}
        self._defaults: dict[tuple[str | None, str | None], DefaultFault] = {}
        self._requests: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeUpstream:
        """Serve from a new thread (safe to call from inside a running event loop)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._on_connection, "127.0.0.1", self.port, backlog=2048)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=5):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url_for(self, kind: str) -> str:
        """The provider base URL for a kind: OpenAI kinds include /v1."""
        return base_url_for(kind, self.base_url)

    @staticmethod
    def refused_base_url(kind: str) -> str:
        return base_url_for(kind, f"http://127.0.0.1:{refused_port()}")

    # --- scripting ------------------------------------------------------------------------
    def script(
        self, protocol: str | None = None, faults: Iterable[Fault] = (), *, model: str | None = None
    ) -> None:
        """Queue faults for the next requests of a protocol and/or model (None: any)."""
        if protocol not in (*PROTOCOLS, None):
            raise ValueError(f"protocol must be one of {PROTOCOLS} or None")
        with self._lock:
            self._scripts.setdefault((protocol, model), deque()).extend(faults)

    def set_default(
        self, fault: DefaultFault | None, *, protocol: str | None = None, model: str | None = None
    ) -> None:
        """What answers when no script is queued; None removes the default."""
        with self._lock:
            if fault is None:
                self._defaults.pop((protocol, model), None)
            else:
                self._defaults[(protocol, model)] = fault

    def pending(self) -> int:
        """Scripted faults not yet used."""
        with self._lock:
            return sum(len(queue) for queue in self._scripts.values())

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self._requests.clear()
            self.errors.clear()

    def _next_fault(self, record: RecordedRequest) -> Fault:
        keys = [(record.protocol, record.model), (None, record.model), (record.protocol, None), (None, None)]
        with self._lock:
            for key in keys:
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
            default = next((self._defaults[k] for k in keys if k in self._defaults), _OK)
        return default(record) if callable(default) else default

    # --- recorded requests ----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, protocol: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.protocol == protocol]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll until predicate() is true or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    # --- serving --------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_opened += 1
        try:
            while (raw := await read_request(reader)) is not None:
                if not await self._answer(raw, reader, writer) or not raw.keep_alive:
                    break
        except BadRequest as exc:
            writer.write(head(400, [("content-length", "0"), ("connection", "close")]))
            self.errors.append(f"bad request: {exc}")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug in the fake: make it visible to the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.discard(task)
            writer.close()

    def _record(self, raw: RawRequest) -> RecordedRequest:
        try:
            payload = json.loads(raw.body) if raw.body else None
        except ValueError:
            payload = None
        protocol, model, stream = route(raw, payload)
        record = RecordedRequest(
            raw.method, raw.path, raw.query, raw.headers, raw.body, payload, protocol, model, stream
        )
        with self._lock:
            self._requests.append(record)
        return record

    async def _answer(
        self, raw: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        record = self._record(raw)
        if record.protocol is None:
            return await self._answer_other(raw, writer)
        fault = record.fault = self._next_fault(record)
        exchange = Exchange(
            reader=reader,
            writer=writer,
            reply=self._reply(fault, record),
            stream=record.stream,
            sse=record.protocol != "gemini" or raw.query.get("alt") == "sse",
            on_disconnect=record.disconnected.set,
            id_header=("request-id" if record.protocol == "anthropic" else "x-request-id", "req_fake"),
        )
        return await play(fault, exchange)

    def _reply(self, fault: Fault, record: RecordedRequest) -> Reply:
        n = next(self._ids)
        text = DEFAULT_TEXT if fault.text is None else fault.text
        ids = {"openai": f"chatcmpl-fake{n:08d}", "anthropic": f"msg_fake{n:08d}", "gemini": f"fake-{n:08d}"}
        protocol = record.protocol or "openai"
        asked = record.json if isinstance(record.json, dict) else {}
        options = asked.get("stream_options")
        return Reply(
            protocol=protocol,
            model=str(record.model or "fake-model"),
            text=text,
            pieces=fault.pieces if fault.pieces is not None else pieces_of(text),
            usage=fault.usage,
            finish=fault.finish,
            response_id=ids[protocol],
            created=int(time.time()),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            api_key=sent_key(protocol, record.headers),
            calls=fault.calls,
            arg_pieces=fault.arg_pieces,
            thinking=fault.thinking,
            signature=fault.signature,
            json_tool=fault.json_tool,
            refusal=fault.refusal,
            choices=asked.get("n") if isinstance(asked.get("n"), int) and asked["n"] > 1 else 1,
            logprobs=asked.get("logprobs") is True,
            top_logprobs=asked.get("top_logprobs") if isinstance(asked.get("top_logprobs"), int) else 0,
        )

    async def _answer_other(self, raw: RawRequest, writer: asyncio.StreamWriter) -> bool:
        served = self.files.get(raw.path) if raw.method == "GET" else None
        if served is not None:
            content_type, content = served
            headers = [("content-type", content_type), ("content-length", str(len(content)))]
            writer.write(head(200, headers) + content)
            await writer.drain()
            return True
        status, payload = 200, models_payload(raw, self.models)
        if payload is None:
            status, payload = (
                404,
                {"error": {"message": f"fake upstream: no route for {raw.method} {raw.path}"}},
            )
        body = json.dumps(payload).encode()
        writer.write(
            head(status, [("content-type", "application/json"), ("content-length", str(len(body)))]) + body
        )
        await writer.drain()
        return True
