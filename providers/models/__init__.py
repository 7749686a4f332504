from .body import CompletionBody
from .capability import CAPABILITY_FIELDS, CapabilitySource, ModelCapability
from .chain import BodyLogging, ChainStep, ChainStrategy, ContentFilterPolicy, FallbackChain
from .circuit import CircuitAction, CircuitActionKind
from .ledger import Attempt, Completion, CompletionOutcome, JournalCursor, Source
from .price import ModelPrice
from .provider import Provider, ProviderKind

__all__ = [
    "CAPABILITY_FIELDS",
    "Attempt",
    "BodyLogging",
    "CapabilitySource",
    "ChainStep",
    "ChainStrategy",
    "CircuitAction",
    "CircuitActionKind",
    "Completion",
    "CompletionBody",
    "CompletionOutcome",
    "ContentFilterPolicy",
    "FallbackChain",
    "JournalCursor",
    "ModelCapability",
    "ModelPrice",
    "Provider",
    "ProviderKind",
    "Source",
]
