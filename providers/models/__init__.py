from .capability import CAPABILITY_FIELDS, CapabilitySource, ModelCapability
from .chain import ChainStep, ChainStrategy, ContentFilterPolicy, FallbackChain
from .circuit import CircuitAction, CircuitActionKind
from .ledger import Attempt, Completion, CompletionOutcome, JournalCursor, Source
from .price import ModelPrice
from .provider import Provider, ProviderKind

__all__ = [
    "CAPABILITY_FIELDS",
    "Attempt",
    "CapabilitySource",
    "ChainStep",
    "ChainStrategy",
    "CircuitAction",
    "CircuitActionKind",
    "Completion",
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
