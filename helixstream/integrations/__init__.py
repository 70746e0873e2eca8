"""Framework integrations (optional): ``helixstream.integrations.flask`` and ``.django``.

Importing a submodule never imports its framework; the framework is imported when a
helper is first called, and a missing one raises ``ImportError`` naming the extra to
install (``pip install 'helixstream[flask]'``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import List, Mapping, Optional, Tuple

__all__ = ["require", "extra_headers"]

#: Headers that belong to one connection, which PEP 3333 forbids to applications.
HOP_BY_HOP = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization te trailers "
    "transfer-encoding upgrade".split()
)


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` for the integration ``extra``, or explain how to install it.

    Raises:
        ImportError: ``module`` is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"helixstream.integrations.{extra} needs {module.split('.')[0]}, which is not "
            f"installed: pip install 'helixstream[{extra}]'"
        ) from exc


def extra_headers(headers: Optional[Mapping[str, str]]) -> List[Tuple[str, str]]:
    """``headers`` as a list of pairs, refusing hop-by-hop headers.

    Raises:
        ValueError: a hop-by-hop header such as ``Connection``.
    """
    if not headers:
        return []
    items = [(str(name), str(value)) for name, value in headers.items()]
    for name, _ in items:
        if name.lower() in HOP_BY_HOP:
            raise ValueError(
                f"{name!r} is a hop-by-hop header, which PEP 3333 forbids to applications"
            )
    return items
