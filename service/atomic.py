"""Files written so that no reader ever sees one half-written: the bytes go to a temp file beside
the target, renamed over it only once complete (a rename within one directory is atomic on POSIX).

The one home for this in ``service/`` and ``kernels/`` (checkpoints, generated models, training
runs, permuted bases); the client package keeps its own, as it must not depend on the service.
Temp files end in ``.incomplete``, which the GPU session's run packing skips (deploy/gpu/session.sh).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path`` to write to (with ``torch.save``, ``save_file``, ...): renamed over
    ``path`` when the block ends, removed when it raises."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".incomplete")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; nothing written here is a secret
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
