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

With a registry, the stream's key is the response's ``X-Stream-Id`` header and its
``stream_id`` attribute (for ``replay.cancel``); pass ``owner=`` (a session or user id)
so that only its owner can resume it. A resume of a stream that has ended and whose
every event the client has is answered ``204 No Content`` (an ``HttpResponse``; an
``EventSource`` then stops reconnecting).

``django.middleware.gzip.GZipMiddleware`` compresses streaming responses and holds
events back until it has a block's worth of data, so the browser sees nothing for a
long time: leave it out of ``MIDDLEWARE`` for projects that serve event streams (or
serve them from a WSGI app without it). A proxy's gzip must be off for the route too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Union

from ..sse import sse_stream
from . import extra_headers, require

if TYPE_CHECKING:  # pragma: no cover
    from django.http import HttpResponseBase  # type: ignore[import-untyped,unused-ignore]

__all__ = ["sse_response"]


def sse_response(
    chunks: Union[Iterable[Any], Callable[[], Iterable[Any]]],
    *,
    request: Any = None,
    status: int = 200,
    headers: Optional[Mapping[str, str]] = None,
    **options: Any,
) -> "HttpResponseBase":
    """A Django ``StreamingHttpResponse`` streaming ``chunks`` as Server-Sent Events.

    Args:
        chunks: as for :func:`helixstream.sse_stream` (a callable is called only when
            a new stream starts, not when a client resumes).
        request: the ``HttpRequest``; its ``Last-Event-ID`` header is the default
            ``last_event_id``.
        status: the HTTP status (a resume answered 204 keeps its 204).
        headers: more response headers (hop-by-hop headers are refused).
        **options: :func:`helixstream.sse_stream` options (``keepalive``, ``progress``,
            ``estimated_tokens``, ``replay``, ``owner``...).

    Returns:
        A ``StreamingHttpResponse`` with :data:`helixstream.SSE_HEADERS` (and
        ``X-Stream-Id`` with a registry), or an empty ``HttpResponse`` with status 204;
        its ``stream_id`` attribute is the stream's key (None without a registry).

    Raises:
        ImportError: Django is not installed (``pip install 'helixstream[django]'``).
        ValueError: a hop-by-hop header in ``headers``, or a bad option.
    """
    http = require("django.http", "django")
    extra = extra_headers(headers)
    if request is not None:
        if "last_event_id" not in options:
            options["last_event_id"] = request.META.get("HTTP_LAST_EVENT_ID")
        options.setdefault("environ", request.META)  # the WSGI environ: the client's socket
    body = sse_stream(chunks, **options)
    response: Any
    if body.status != 200:  # nothing to send: no body, and no event-stream headers
        body.close()
        response = http.HttpResponse(status=body.status)
        del response["Content-Type"]
    else:
        response = http.StreamingHttpResponse(body, status=status)
    for name, value in (*body.headers, *extra):
        response[name] = value
    response.stream_id = body.stream_id
    return response
