"""neumeta-client: pull ResNet20 models of any width from a NeuMeta weight service.

    from neumeta_client import Client
    with Client("http://localhost:8000") as client:
        path = client.pull("resnet20", width=32)   # verified ONNX file in the local cache
"""

# Set before the imports below: client.py reads it for its User-Agent.
__version__ = "0.1.0"

from neumeta_client._inference import Prediction
from neumeta_client._retry import RetryPolicy
from neumeta_client.client import AsyncClient, Client
from neumeta_client.errors import (
    Busy,
    CachedCopyCorrupt,
    CacheLockTimeout,
    CacheWriteError,
    ChecksumMismatch,
    InvalidParameter,
    MissingExtra,
    NeuMetaError,
    NoModelFits,
    OfflineError,
    RequestTimeout,
    ServerError,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UnknownArch,
    WidthOutOfRange,
)
from neumeta_client.housekeeping import CachedModel, CacheReport, PruneResult, prune_cache, scan_cache

__all__ = [
    "AsyncClient",
    "Busy",
    "CacheLockTimeout",
    "CacheReport",
    "CacheWriteError",
    "CachedCopyCorrupt",
    "CachedModel",
    "ChecksumMismatch",
    "Client",
    "InvalidParameter",
    "MissingExtra",
    "NeuMetaError",
    "NoModelFits",
    "OfflineError",
    "Prediction",
    "PruneResult",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "UnknownArch",
    "WidthOutOfRange",
    "prune_cache",
    "scan_cache",
]
