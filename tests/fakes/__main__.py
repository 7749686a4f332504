"""Serve the fake upstream until interrupted: python -m tests.fakes [--port 8999]."""

from __future__ import annotations

import argparse
import contextlib
import threading

from .upstream import FakeUpstream


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI / Anthropic / Gemini upstream.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--models", default="fake-model", help="comma-separated model names")
    args = parser.parse_args()
    with FakeUpstream(models=args.models.split(","), port=args.port, record_limit=1000) as fake:
        print(f"fake upstream on {fake.base_url} (OpenAI kinds: {fake.base_url_for('openai')})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
