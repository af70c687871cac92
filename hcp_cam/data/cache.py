"""Where hcp-cam keeps what it can recompute: a per-user cache folder, never a bundle or dataset folder.

The FA maps, computed brain masks, the pybids index of a BIDS dataset and the demo data are
caches: deleting the folder costs time, not results. They go to ``$XDG_CACHE_HOME/hcp-cam``
(``~/.cache/hcp-cam`` when the variable is unset), the XDG base-directory rule that pip and
matplotlib follow too, so that a bundle folder or a dataset can be read-only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "user_cache_dir", "dataset_key"]

# the variable that names the cache root's parent (XDG base-directory specification)
CACHE_ENV = "XDG_CACHE_HOME"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hcp-cam``, or ``~/.cache/hcp-cam``; an absolute path, not created here.

    A relative ``XDG_CACHE_HOME`` is ignored, as the specification says.
    """
    base = os.environ.get(CACHE_ENV, "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "hcp-cam"


def dataset_key(root: str | os.PathLike) -> str:
    """A cache folder name that differs between datasets of the same name in different places:
    ``<folder name>-<first 10 hex digits of the SHA-1 of its resolved path>``."""
    root = Path(root)
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    return f"{root.resolve().name}-{digest}"
