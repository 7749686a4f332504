"""Test doubles that speak real protocols over real sockets."""

from .faults import ERROR_NAMES, FakeToolCall, FakeUsage, Fault
from .upstream import FakeUpstream, RecordedRequest, refused_port

__all__ = [
    "ERROR_NAMES",
    "FakeToolCall",
    "FakeUpstream",
    "FakeUsage",
    "Fault",
    "RecordedRequest",
    "refused_port",
]
