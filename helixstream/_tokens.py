"""Token counting: a counter is any callable ``str -> int``."""
from __future__ import annotations

import re
from typing import Callable

__all__ = ["TokenCounter", "estimate_tokens"]

#: A token counter: takes text, returns its token count.
TokenCounter = Callable[[str], int]

_PIECE = re.compile(r"\w+|[^\w\s]+|\s+")


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens an LLM BPE tokenizer would make of ``text``."""
    if not text:
        return 0
    n = 0
    for m in _PIECE.finditer(text):
        piece = m.group()
        n += max(1, (len(piece) + 3) // 4) if not piece.isspace() else 0
    return max(n, 1)
