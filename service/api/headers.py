"""The headers of a model's two URLs (``/model?...`` and ``/blobs/sha256/<hex>``); they differ
only in ``Cache-Control`` and ``Content-Location``. Every value comes from the resolved request and
the digest that travelled with the bytes: nothing is counted or hashed here."""

from __future__ import annotations

from service.api import conditional
from service.hypernet.checkpoint import Checkpoint
from service.serving.request import ModelRequest

# /model names the current model of a request: its bytes change with the checkpoint, the generator
# version or the backend's numerics, so a cache must ask every time (a 304 is cheap: see service/serving/digests.py).
REVALIDATE = "no-cache"
# /blobs/sha256/<hex> names bytes by their digest: they can never change.
IMMUTABLE = "public, max-age=31536000, immutable"


def blob_url(digest: str) -> str:
    return f"/blobs/sha256/{digest}"


def measured_accuracy(ckpt: Checkpoint, width: int) -> str | None:
    """``X-Model-Accuracy``: the manifest's measured test accuracy at ``width`` (percent) and the
    split it was measured on, e.g. ``92.44; split=test[:5000]; measured_as=float32``. The manifest
    measures the float32 network, whatever dtype is served; None for a width it did not measure."""
    evaluation = ckpt.manifest.evaluation or {}
    row = (evaluation.get("per_width") or {}).get(str(width))
    if not isinstance(row, dict) or row.get("accuracy") is None:
        return None
    split = row.get("measured_on") or evaluation.get("split", "unknown")
    return f"{float(row['accuracy']):g}; split={split}; measured_as=float32"


def model_headers(request: ModelRequest, digest: str, cache_status: str, *, immutable: bool) -> dict[str, str]:
    headers = {
        "ETag": conditional.etag_of(digest), "X-Model-Sha256": digest, "X-Model-Arch": request.arch,
        "X-Model-Width": str(request.width), "X-Model-Params": str(request.params),
        "X-Model-Dtype": request.dtype, "X-Model-Samples": str(request.samples),
        "X-Checkpoint": request.ckpt.short_sha, "X-Cache": cache_status, "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{request.filename}"',
    }
    accuracy = measured_accuracy(request.ckpt, request.width)
    if accuracy is not None:
        headers["X-Model-Accuracy"] = accuracy
    if immutable:
        headers["Cache-Control"] = IMMUTABLE
    else:
        headers["Cache-Control"] = REVALIDATE
        headers["Content-Location"] = blob_url(digest)  # the same bytes under a name that never changes
    return headers
