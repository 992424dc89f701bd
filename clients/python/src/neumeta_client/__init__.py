"""neumeta-client: pull ResNet20 models of any width from a NeuMeta weight service.

    from neumeta_client import Client
    with Client("http://localhost:8000") as client:
        path = client.pull("resnet20", width=32)   # verified ONNX file in the local cache
"""

__version__ = "0.1.0"

from neumeta_client._inference import Prediction  # noqa: E402
from neumeta_client._retry import RetryPolicy  # noqa: E402
from neumeta_client.client import AsyncClient, Client  # noqa: E402
from neumeta_client.errors import (  # noqa: E402
    Busy,
    CacheLockTimeout,
    ChecksumMismatch,
    InvalidParameter,
    MissingExtra,
    NeuMetaError,
    OfflineError,
    RequestTimeout,
    ServerError,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UnknownArch,
    WidthOutOfRange,
)

__all__ = [
    "AsyncClient", "Client", "Prediction", "RetryPolicy",
    "NeuMetaError", "UnknownArch", "WidthOutOfRange", "InvalidParameter", "Unauthorized", "Busy", "ServerError",
    "UnexpectedResponse", "TransportError", "RequestTimeout", "ChecksumMismatch", "OfflineError",
    "CacheLockTimeout", "MissingExtra",
]
