"""Serve the fake upstream until interrupted: python -m tests.fakes [--port 8999]."""

from __future__ import annotations

import argparse
import contextlib
import threading

from .faults import FakeToolCall, Fault
from .upstream import FakeUpstream


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI / Anthropic / Gemini upstream.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--models", default="fake-model", help="comma-separated model names")
    parser.add_argument(
        "--fail-model", action="append", default=[], help="a model that always answers 503 (repeatable)"
    )
    parser.add_argument(
        "--tool-model",
        action="append",
        default=[],
        help="a model that always calls get_weather(city=Paris), arguments streamed in 4 pieces",
    )
    args = parser.parse_args()
    with FakeUpstream(models=args.models.split(","), port=args.port, record_limit=1000) as fake:
        for model in args.fail_model:
            fake.set_default(Fault.error("server_error"), model=model)
        for model in args.tool_model:
            call = FakeToolCall("get_weather", {"city": "Paris"}, id="call_bench")
            fake.set_default(Fault.tool_calls([call], arg_pieces=4), model=model)
        print(f"fake upstream on {fake.base_url} (OpenAI kinds: {fake.base_url_for('openai')})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
