"""One adapter per wire protocol, all of one shape (see base.Adapter)."""

from .registry import get_adapter

__all__ = ["get_adapter"]
