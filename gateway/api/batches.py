"""/v1/batches: post a file of prompts as a batch run (batches spoke), read its status and
results, cancel it. Authenticated with a gateway key like every /v1/ path; a key sees only
the batches it posted. Errors in OpenAI's shape (gateway.api.errors).

POST /v1/batches takes multipart/form-data (a `file` part; fields `model`, `concurrency`,
`max_tokens`, `format`) or JSON (`{"model", "input": [{"prompt": ...} | {"messages": [...]}],
"concurrency", "max_tokens"}`, or `"file": "<CSV or JSONL text>"` with `"format"`).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from batches.exports import CONTENT_TYPES, csv_header, result_chunk
from batches.selectors import batch_get, batch_progress, batch_result_page
from batches.services import BatchInvalid, batch_cancel, batch_create
from batches.services.create import BatchOwner
from gateway.api import chat
from gateway.api.errors import ApiError, api_error
from gateway.api.http import ApiRequest, ApiResponse, json_response
from gateway.services.key_cache import KeyInfo


def _off_loop(fn):
    return sync_to_async(fn, thread_sensitive=False)


async def route(request: ApiRequest, rest: str) -> ApiResponse:
    """`rest`: the path after /v1/batches ("", "/{id}", "/{id}/results", "/{id}/cancel")."""
    parts = [p for p in rest.split("/") if p]
    allowed = "POST" if not parts or parts[1:] == ["cancel"] else "GET"
    if len(parts) > 2 or parts[1:] not in ([], ["results"], ["cancel"]):
        return chat.not_found(request)
    if request.method != allowed:
        return chat.method_not_allowed(allowed)
    try:
        key = await chat.authenticate(request)
        if not parts:
            return await _create(request, key)
        batch = await _off_loop(batch_get)(batch_id=parts[0], gateway_key_prefix=key.prefix)
        if batch is None:
            raise ApiError(404, f"No batch '{parts[0]}' posted with this key.", code="batch_not_found")
        if parts[1:] == ["results"]:
            return _results(batch.pk, request.query)
        if parts[1:] == ["cancel"]:
            batch = await _off_loop(batch_cancel)(batch_id=batch.pk)
        return json_response(200, await _off_loop(_batch_body)(batch))
    except BatchInvalid as exc:
        return ApiError(400, str(exc), param=exc.field).response()
    except Exception as exc:
        return api_error(exc).response()


def _batch_body(batch) -> dict[str, Any]:
    progress = batch_progress(batch)
    counts = {k: progress[k] for k in ("total", "done", "failed", "cancelled", "remaining")}
    return {
        "id": str(batch.pk),
        "object": "batch",
        "model": batch.chain_slug,
        "status": batch.status,
        "created_at": int(batch.created_at.timestamp()),
        "concurrency": batch.concurrency,
        "max_tokens": batch.max_tokens,
        "counts": counts,
        "percent": progress["percent"],
        "rate_per_s": progress["rate_per_s"],
        "eta_s": progress["eta_s"],
        "cost_usd": str(progress["cost_usd"]),
        "results_url": f"/v1/batches/{batch.pk}/results",
    }


def _integer(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"'{name}' must be an integer.", param=name) from None


def _upload(request: ApiRequest) -> tuple[bytes, str, dict[str, Any]]:
    """The file's bytes, its name and the other fields, from a multipart or a JSON body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(request.body))}
        handlers = [MemoryFileUploadHandler(), TemporaryFileUploadHandler()]
        try:
            fields, files = MultiPartParser(meta, io.BytesIO(request.body), handlers).parse()
        except MultiPartParserError as exc:
            raise ApiError(400, f"Unreadable multipart body: {exc}.") from None
        upload = files.get("file")
        if upload is None:
            raise ApiError(400, "Send the prompts as a multipart part named 'file'.", param="file")
        return upload.read(), upload.name or "", fields.dict()
    try:
        fields = json.loads(request.body or b"null")
    except ValueError:
        raise ApiError(400, "The body is not valid JSON (or send multipart/form-data).") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "The body must be a JSON object.")
    if isinstance(fields.get("input"), list):
        lines = "\n".join(json.dumps(item) for item in fields["input"])
        return lines.encode(), "input.jsonl", {**fields, "format": "jsonl"}
    if isinstance(fields.get("file"), str):
        return fields["file"].encode(), "", fields
    message = "Give 'input' (a list of prompt objects) or 'file' (CSV or JSONL text)."
    raise ApiError(400, message, param="input")


async def _create(request: ApiRequest, key: KeyInfo) -> ApiResponse:
    data, filename, fields = await _off_loop(_upload)(request)
    loaded = await chat.chain_for(key, fields.get("model") or None)
    owner = BatchOwner(
        gateway_key_prefix=key.prefix,
        key_daily_budget_usd=key.daily_budget_usd,
        key_monthly_budget_usd=key.monthly_budget_usd,
    )
    batch = await _off_loop(batch_create)(
        data=data,
        filename=filename,
        chain_slug=loaded.slug,
        owner=owner,
        concurrency=_integer(fields, "concurrency"),
        max_tokens=_integer(fields, "max_tokens"),
        declared_format=fields.get("format") or None,
    )
    return json_response(200, await _off_loop(_batch_body)(batch))


def _results(batch_id, query: str) -> ApiResponse:
    fmt = parse_qs(query).get("format", ["jsonl"])[0]
    if fmt not in CONTENT_TYPES:
        raise ApiError(400, "format must be csv or jsonl.", param="format")
    disposition = f'attachment; filename="batch-{batch_id}.{fmt}"'
    headers = [("content-type", CONTENT_TYPES[fmt]), ("content-disposition", disposition)]
    return ApiResponse(200, headers, stream=_result_stream(batch_id, fmt))


async def _result_stream(batch_id, fmt: str) -> AsyncIterator[bytes]:
    """The result file a page of rows at a time (never the whole file in memory)."""
    if fmt == "csv":
        yield csv_header().encode()
    after = -1
    while rows := await _off_loop(batch_result_page)(batch_id=batch_id, after_index=after):
        yield result_chunk(rows, fmt).encode()
        after = rows[-1]["index"]
