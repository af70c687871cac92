"""Package namespaces whose names load on first use (PEP 562).

``hcp-cam fa`` and ``hcp-cam --help`` must not pay for MONAI, ignite or pandas because a package's
``__init__`` re-exports its public API; with :func:`lazy_exports` a package lists its names and the
submodule of each, and a name's module is imported the first time the name is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazily loaded names.

    Args:
        package: the package's ``__name__``.
        names: public name -> the submodule (relative to ``package``) that defines it.
        submodules: submodule names that are themselves public attributes.

    Returns:
        ``(__getattr__, __dir__)``; assign both in the package's ``__init__``. A name, once loaded, is
        stored in the package's namespace, so later lookups do not come back here.
    """
    names = dict(names)
    subs = tuple(submodules)
    public = sorted({*names, *subs})

    def __getattr__(name: str) -> Any:
        if name in subs:
            return importlib.import_module(f"{package}.{name}")
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        vars(importlib.import_module(package))[name] = value
        return value

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__
