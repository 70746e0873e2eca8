"""Server-Sent Events from Django views (WSGI).

::

    from helixstream import SSEReplay
    from helixstream.integrations.django import sse_response

    replay = SSEReplay()          # one per endpoint: lets clients resume after a drop

    def answer(request):
        return sse_response(lambda: llm_stream(prompt), request=request, progress=True,
                            replay=replay)

The response is a ``StreamingHttpResponse``; when the client goes away, the WSGI server
closes it, which stops the stream's threads and closes the LLM stream.

``django.middleware.gzip.GZipMiddleware`` compresses streaming responses and holds
events back until it has a block's worth of data, so the browser sees nothing for a
long time: leave it out of ``MIDDLEWARE`` for projects that serve event streams (or
serve them from a WSGI app without it). A proxy's gzip must be off for the route too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Union

from .._sse import SSE_HEADERS, sse_stream
from . import extra_headers, require

if TYPE_CHECKING:  # pragma: no cover
    from django.http import StreamingHttpResponse  # type: ignore[import-untyped,unused-ignore]

__all__ = ["sse_response"]


def sse_response(
    chunks: Union[Iterable[Any], Callable[[], Iterable[Any]]],
    *,
    request: Any = None,
    status: int = 200,
    headers: Optional[Mapping[str, str]] = None,
    **options: Any,
) -> "StreamingHttpResponse":
    """A Django ``StreamingHttpResponse`` streaming ``chunks`` as Server-Sent Events.

    Args:
        chunks: as for :func:`helixstream.sse_stream` (a callable is called only when
            a new stream starts, not when a client resumes).
        request: the ``HttpRequest``; its ``Last-Event-ID`` header is the default
            ``last_event_id``.
        status: the HTTP status.
        headers: more response headers (hop-by-hop headers are refused).
        **options: :func:`helixstream.sse_stream` options (``keepalive``, ``progress``,
            ``estimated_tokens``, ``replay``...).

    Returns:
        A ``StreamingHttpResponse`` with :data:`helixstream.SSE_HEADERS`.

    Raises:
        ImportError: Django is not installed (``pip install 'helixstream[django]'``).
        ValueError: a hop-by-hop header in ``headers``, or a bad option.
    """
    http = require("django.http", "django")
    extra = extra_headers(headers)
    if "last_event_id" not in options and request is not None:
        options["last_event_id"] = request.META.get("HTTP_LAST_EVENT_ID")
    body = sse_stream(chunks, **options)
    response: "StreamingHttpResponse" = http.StreamingHttpResponse(body, status=status)
    for name, value in (*SSE_HEADERS, *extra):
        response[name] = value
    return response
