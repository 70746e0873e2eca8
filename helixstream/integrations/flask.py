"""Server-Sent Events from Flask views.

::

    from helixstream import SSEReplay
    from helixstream.integrations.flask import sse_response

    replay = SSEReplay()          # one per endpoint: lets clients resume after a drop

    @app.get("/answer")
    def answer():
        return sse_response(lambda: llm_stream(prompt), progress=True, replay=replay)

The response streams as the model writes; when the client goes away, the WSGI server
closes the response, which stops the stream's threads and closes the LLM stream.

With a registry, the stream's key is the response's ``X-Stream-Id`` header and its
``stream_id`` attribute (for ``replay.cancel``); pass ``owner=`` (a session or user id)
so that only its owner can resume it. A resume of a stream that has ended and whose
every event the client has is answered ``204 No Content`` (an ``EventSource`` then
stops reconnecting).

Response compression must be off for this route (Flask-Compress, a gzip middleware, a
proxy's gzip): a compressor holds events back until it has a block's worth of data.
Flask itself does not compress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Union

from ..sse import sse_stream
from . import extra_headers, require

if TYPE_CHECKING:  # pragma: no cover
    import flask

__all__ = ["sse_response"]


def sse_response(
    chunks: Union[Iterable[Any], Callable[[], Iterable[Any]]],
    *,
    status: int = 200,
    headers: Optional[Mapping[str, str]] = None,
    **options: Any,
) -> "flask.Response":
    """A Flask response streaming ``chunks`` as Server-Sent Events.

    Args:
        chunks: as for :func:`helixstream.sse_stream` (a callable is called only when
            a new stream starts, not when a client resumes).
        status: the HTTP status (a resume answered 204 keeps its 204).
        headers: more response headers (hop-by-hop headers are refused).
        **options: :func:`helixstream.sse_stream` options (``keepalive``, ``progress``,
            ``estimated_tokens``, ``replay``, ``owner``...). ``last_event_id`` defaults
            to the request's ``Last-Event-ID`` header.

    Returns:
        A ``flask.Response`` with :data:`helixstream.SSE_HEADERS` (and ``X-Stream-Id``
        with a registry), streaming; its ``stream_id`` attribute is the stream's key
        (None without a registry).

    Raises:
        ImportError: Flask is not installed (``pip install 'helixstream[flask]'``).
        ValueError: a hop-by-hop header in ``headers``, or a bad option.
    """
    framework = require("flask", "flask")
    extra = extra_headers(headers)
    if framework.has_request_context():
        if "last_event_id" not in options:
            options["last_event_id"] = framework.request.headers.get("Last-Event-ID")
        options.setdefault("environ", framework.request.environ)  # the client's socket
    body = sse_stream(chunks, **options)
    if body.status != 200:  # nothing to send: no body, and no event-stream headers
        body.close()
        response: "flask.Response" = framework.Response(
            status=body.status, headers=[*body.headers, *extra]
        )
        del response.headers["Content-Type"]  # no content, no content type
    else:
        response = framework.Response(
            body, status=status, headers=[*body.headers, *extra], direct_passthrough=True
        )
    response.stream_id = body.stream_id  # type: ignore[attr-defined]
    return response
