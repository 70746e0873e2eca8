"""gunicorn config: the shutdown recipe of docs/sse.md (close the registry on SIGTERM)."""
import signal

import helixstream as hs

shutdown = hs.StopSignal()


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    from tests.wsgi_apps.app import replay

    replay.close_on(shutdown)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
        shutdown.set()  # only wakes a thread
        if callable(previous):
            previous(signum, frame)  # gunicorn's own: stop accepting, drain

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    from tests.wsgi_apps.app import replay

    replay.close()
