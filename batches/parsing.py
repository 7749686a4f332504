"""Reading an uploaded batch file: CSV (a `prompt` column, optional `system` and `id`) or JSONL
(one object a line with `prompt` or `messages`, optional `system` and `id`). Plain Python, no
Django: every problem is a BatchFileError naming the row or line, never an exception escaping."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
FORMATS = ("csv", "jsonl")


class BatchFileError(ValueError):
    """The file cannot be run; the message says where and why."""


@dataclass(frozen=True, slots=True)
class BatchInput:
    input_id: str
    prompt: str  # the text shown in the results: the prompt, or the last user message
    messages: list[dict[str, Any]]


def file_format(filename: str, data: bytes, declared: str | None = None) -> str:
    """csv or jsonl: as declared, else by the file's extension, else by its first character."""
    if declared:
        if declared not in FORMATS:
            raise BatchFileError(f"Unknown format '{declared}': use csv or jsonl.")
        return declared
    name = filename.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if data.lstrip()[:1] == b"{" else "csv"


def batch_file_parse(data: bytes, *, filename: str = "", declared: str | None = None) -> list[BatchInput]:
    if len(data) > MAX_BYTES:
        raise BatchFileError(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError(f"The file is not UTF-8 text (byte {exc.start}).") from None
    rows = _csv_rows(text) if file_format(filename, data, declared) == "csv" else _jsonl_rows(text)
    if not rows:
        raise BatchFileError("The file holds no prompts.")
    return rows


def _check_count(count: int) -> None:
    if count > MAX_ROWS:
        raise BatchFileError(f"The file has more than {MAX_ROWS:,} prompts.")


def _messages(prompt: str, system: str) -> list[dict[str, Any]]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


def _csv_rows(text: str) -> list[BatchInput]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if "prompt" not in header:
            raise BatchFileError("The CSV has no 'prompt' column (its first line names the columns).")
        column = {name: header.index(name) for name in ("prompt", "system", "id") if name in header}
        rows: list[BatchInput] = []
        for number, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue  # blank line
            cells = {name: values[i] if i < len(values) else "" for name, i in column.items()}
            prompt = cells["prompt"].strip()
            if not prompt:
                raise BatchFileError(f"Line {number}: the prompt is empty.")
            _check_count(len(rows) + 1)
            input_id = cells.get("id", "").strip() or str(len(rows) + 1)
            rows.append(BatchInput(input_id, prompt, _messages(prompt, cells.get("system", "").strip())))
    except csv.Error as exc:
        raise BatchFileError(f"Line {reader.line_num}: not valid CSV ({exc}).") from None
    return rows


def _jsonl_rows(text: str) -> list[BatchInput]:
    rows: list[BatchInput] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise BatchFileError(f"Line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(item, dict):
            raise BatchFileError(f"Line {number}: each line must be a JSON object.")
        _check_count(len(rows) + 1)
        rows.append(_jsonl_row(item, number, default_id=str(len(rows) + 1)))
    return rows


def _jsonl_row(item: dict[str, Any], number: int, *, default_id: str) -> BatchInput:
    raw_id = item.get("id")
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise BatchFileError(f"Line {number}: 'id' must be a string or a number.")
    input_id = default_id if raw_id in (None, "") else str(raw_id)
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BatchFileError(f"Line {number}: 'messages' must be a non-empty list of message objects.")
        return BatchInput(input_id, _last_user_text(messages), messages)
    prompt, system = item.get("prompt"), item.get("system") or ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BatchFileError(f"Line {number}: give a non-empty 'prompt' string or a 'messages' list.")
    if not isinstance(system, str):
        raise BatchFileError(f"Line {number}: 'system' must be a string.")
    return BatchInput(input_id, prompt.strip(), _messages(prompt.strip(), system.strip()))


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""
