"""Provider kind -> adapter."""

from __future__ import annotations

from .base import Adapter

_ADAPTERS: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    _ADAPTERS[adapter.kind] = adapter
    return adapter


def get_adapter(kind: str) -> Adapter:
    if not _ADAPTERS:
        _load()
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise LookupError(f"no adapter for provider kind '{kind}'") from None


def _load() -> None:
    from . import anthropic, gemini, openai, simulated

    for module in (openai, anthropic, gemini, simulated):
        for adapter in module.ADAPTERS:
            register(adapter)
