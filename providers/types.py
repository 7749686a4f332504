"""The hub's result and error types: what spokes receive from providers' services and selectors.

Names only (re-exported from where they are defined), so that spokes depend on this one module
rather than on the engine's or the services' insides.
"""

from providers.engine.results import (
    NO_CALL_OUTCOMES,
    AllProvidersFailed,
    AttemptRecord,
    Cancelled,
    EngineError,
    RetryLater,
    StreamInterrupted,
    calls_made,
)
from providers.engine.routing import Route, RouteStep
from providers.engine.types import FailureClass, Price, StreamEvent, ToolCall, ToolCallDelta, Usage
from providers.services.budget import BudgetExceeded
from providers.services.chains import ChainNotFound, LoadedChain, NoUsableStep
from providers.services.completions import CompletionResult
from providers.services.faults import StepOutOfRange
from providers.services.inputs import InvalidRequest
from providers.services.streaming import AnsweringStep, CompletionStream

__all__ = [
    "NO_CALL_OUTCOMES",
    "AllProvidersFailed",
    "AnsweringStep",
    "AttemptRecord",
    "BudgetExceeded",
    "Cancelled",
    "ChainNotFound",
    "CompletionResult",
    "CompletionStream",
    "EngineError",
    "FailureClass",
    "InvalidRequest",
    "LoadedChain",
    "NoUsableStep",
    "Price",
    "RetryLater",
    "Route",
    "RouteStep",
    "StepOutOfRange",
    "StreamEvent",
    "StreamInterrupted",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "calls_made",
]
