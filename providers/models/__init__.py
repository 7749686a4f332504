from .chain import ChainStep, ContentFilterPolicy, FallbackChain
from .ledger import Attempt, Completion, CompletionOutcome, Source
from .price import ModelPrice
from .provider import Provider, ProviderKind

__all__ = [
    "Attempt",
    "ChainStep",
    "Completion",
    "CompletionOutcome",
    "ContentFilterPolicy",
    "FallbackChain",
    "ModelPrice",
    "Provider",
    "ProviderKind",
    "Source",
]
