"""A playground run as code: the same request sent to this server's /v1 with curl and with the
OpenAI Python SDK. The key is always a placeholder (RANA never shows a gateway key again after
issuing it); attached images' data: URLs are shortened so the snippet stays readable."""

from __future__ import annotations

import json
import pprint
import shlex
from typing import Any

KEY_PLACEHOLDER = "rana_YOUR_GATEWAY_KEY"
DATA_URL_KEEP = 40


def _short_data_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _short_data_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_data_urls(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > DATA_URL_KEEP:
        return value[:DATA_URL_KEEP] + "…(shortened: paste the whole data: URL here)"
    return value


def request_body(*, chain_slug: str, messages: list[dict], params: dict[str, Any], stream: bool) -> dict:
    """The /v1/chat/completions body the run stands for: `model` names the chain by its slug."""
    body: dict[str, Any] = {"model": chain_slug, "messages": _short_data_urls(messages), **params}
    if stream:
        body["stream"] = True
    return body


def curl_snippet(*, base_url: str, body: dict) -> str:
    data = json.dumps(body, indent=2, ensure_ascii=False)
    lines = [
        f"curl {shlex.quote(base_url + '/chat/completions')}",
        f'  -H "Authorization: Bearer {KEY_PLACEHOLDER}"',
        '  -H "Content-Type: application/json"',
        *(["  -N"] if body.get("stream") else []),
        f"  -d {shlex.quote(data)}",
    ]
    return " \\\n".join(lines)


def python_snippet(*, base_url: str, body: dict) -> str:
    args = {k: v for k, v in body.items() if k != "stream"}
    lines = [
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url="{base_url}", api_key="{KEY_PLACEHOLDER}")',
        "",
    ]
    call = ",\n".join(f"    {k}={_py(v)}" for k, v in args.items())
    if body.get("stream"):
        lines += [
            f"stream = client.chat.completions.create(\n{call},\n    stream=True,\n)",
            "for chunk in stream:",
            "    if chunk.choices and chunk.choices[0].delta.content:",
            '        print(chunk.choices[0].delta.content, end="", flush=True)',
        ]
    else:
        lines += [
            f"completion = client.chat.completions.create(\n{call},\n)",
            "print(completion.choices[0].message.content)",
        ]
    return "\n".join(lines)


def _py(value: Any) -> str:
    """A JSON value as Python source (JSON's values are all Python literals)."""
    return pprint.pformat(value, width=88, sort_dicts=False).replace("\n", "\n    ")


def run_snippets(*, base_url: str, chain_slug: str, messages: list[dict], params: dict, stream: bool) -> dict:
    body = request_body(chain_slug=chain_slug, messages=messages, params=params, stream=stream)
    return {
        "curl": curl_snippet(base_url=base_url, body=body),
        "python": python_snippet(base_url=base_url, body=body),
    }
