"""Reading batch files: CSV and JSONL, their limits, and a clear error for every bad file."""

from __future__ import annotations

import json

import pytest

from batches import parsing
from batches.parsing import BatchFileError, batch_file_parse


def test_csv_keeps_ids_and_puts_the_system_prompt_first():
    rows = batch_file_parse(b"id,prompt,system\na1,Hello,Be brief\n,Second,\n", filename="p.csv")
    assert [(r.input_id, r.prompt) for r in rows] == [("a1", "Hello"), ("2", "Second")]
    assert rows[0].messages == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello"},
    ]
    assert rows[1].messages == [{"role": "user", "content": "Second"}]


def test_csv_columns_are_found_whatever_their_order_and_case_and_a_bom_is_ignored():
    rows = batch_file_parse('\ufeffID, Prompt\n7,"a, quoted\nprompt"\n'.encode(), filename="x.csv")
    assert [(r.input_id, r.prompt) for r in rows] == [("7", "a, quoted\nprompt")]


def test_jsonl_takes_prompts_or_messages_and_numeric_ids():
    lines = [
        {"id": 5, "prompt": "Hi", "system": "Terse"},
        {"messages": [{"role": "user", "content": "Ask"}]},
    ]
    rows = batch_file_parse("\n".join(json.dumps(x) for x in lines).encode() + b"\n\n", filename="p.jsonl")
    assert [(r.input_id, r.prompt) for r in rows] == [("5", "Hi"), ("2", "Ask")]
    assert rows[0].messages[0] == {"role": "system", "content": "Terse"}


def test_the_format_is_sniffed_without_an_extension():
    assert batch_file_parse(b'{"prompt": "x"}\n')[0].prompt == "x"
    assert batch_file_parse(b"prompt\nx\n")[0].prompt == "x"


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"question\nhello\n", "a.csv", "no 'prompt' column"),
        (b"id,prompt\n1,fine\n\n3, \n", "a.csv", "Line 4: the prompt is empty"),
        (b"prompt\n", "a.csv", "holds no prompts"),
        (b"", "a.jsonl", "holds no prompts"),
        (b'{"prompt": "ok"}\n{"prompt": \n', "a.jsonl", "Line 2: not valid JSON"),
        (b"[1, 2]\n", "a.jsonl", "Line 1: each line must be a JSON object"),
        (b'{"prompt": ""}\n', "a.jsonl", "Line 1: give a non-empty 'prompt'"),
        (b'{"messages": []}\n', "a.jsonl", "'messages' must be a non-empty list"),
        (b'{"prompt": "x", "id": [1]}\n', "a.jsonl", "'id' must be a string or a number"),
        (b"\xff\xfeprompt\n", "a.csv", "not UTF-8"),
    ],
)
def test_bad_files_are_refused_naming_the_line(data, filename, message):
    with pytest.raises(BatchFileError, match=message):
        batch_file_parse(data, filename=filename)


def test_the_row_and_size_limits_hold(monkeypatch):
    monkeypatch.setattr(parsing, "MAX_ROWS", 3)
    assert len(batch_file_parse(b"prompt\na\nb\nc\n", filename="a.csv")) == 3
    with pytest.raises(BatchFileError, match="more than 3 prompts"):
        batch_file_parse(b"prompt\na\nb\nc\nd\n", filename="a.csv")
    monkeypatch.setattr(parsing, "MAX_BYTES", 10)
    with pytest.raises(BatchFileError, match="larger than"):
        batch_file_parse(b"prompt\n" + b"x" * 20, filename="a.csv")


def test_an_unknown_declared_format_is_refused():
    with pytest.raises(BatchFileError, match="Unknown format 'xml'"):
        batch_file_parse(b"prompt\nx\n", declared="xml")
