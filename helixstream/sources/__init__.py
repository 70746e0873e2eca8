"""Sources: LLM streams from SDKs, raw HTTP event streams and push-style producers.

Each function here turns what an LLM client gives you into an iterable that any
helixstream stream takes as its source::

    from openai import OpenAI
    import helixstream as hs
    from helixstream.sources import from_openai

    client = OpenAI()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
        stream=True, stream_options={"include_usage": True},
    )
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(stream))
    with output:
        for chunk in output:
            print(chunk.content, end="", flush=True)
    print(get_result().total_tokens)   # the service's own count

- :func:`from_openai`: the ``openai`` SDK's chat completion stream (also its legacy
  completions and its Responses streams).
- :func:`from_anthropic`: the ``anthropic`` SDK's message stream.
- :func:`from_sse`: a raw OpenAI-compatible event stream read with ``requests`` or
  ``httpx`` (Ollama, vLLM, llama.cpp, LM Studio, ...), without any SDK.
- :class:`Channel`: a bounded, thread-safe pipe for producers that push text (a
  LangChain callback handler, a transformers ``TextStreamer``, any thread).

What they have in common:

- The text arrives as ``str`` items. The service's token counts, when it sends them,
  arrive last, as a chunk with no text and ``metadata["usage"]`` (a dict with
  ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``); the aggregation stage
  then reports ``completion_tokens`` as ``total_tokens``, exactly. That chunk's
  metadata also holds ``finish_reason`` (the service's own word: ``"stop"``,
  ``"length"``, ``"end_turn"``, ...), ``model`` and ``id`` when the service sent them.
  It is only sent when the stream reported usage or a finish reason.
- The adapters are objects, not generators, with a ``close()`` that may be called from
  any thread: closing the helixstream output calls it while another thread may be
  blocked reading, and it closes the SDK stream or the HTTP response, which ends that
  read and the request upstream. For an HTTP/1.1 connection of ``httpx`` (which both
  SDKs use) or ``requests``, ``close()`` first shuts the socket down, so a read that is
  waiting for a silent server returns at once instead of at the server's next byte.
- helixstream imports no SDK: the adapters read the objects they are given by
  attribute or key (``event.choices[0].delta.content`` or
  ``event["choices"][0]["delta"]["content"]``), so plain dicts work too.
- Blocking code only: an ``AsyncStream`` is refused with a ``TypeError``.

Push-style producers write into a :class:`Channel` from their own thread, and the
stream reads it::

    channel = Channel()

    def produce():                     # in another thread
        for word in ["Hello ", "world."]:
            channel.send(word)         # blocks while the channel is full

    threading.Thread(target=channel.run, args=(produce,), daemon=True).start()
    output, get_result = hs.EnhancedStreamer().stream_buffered(channel)

``channel.run(func, ...)`` calls ``func`` and then closes the channel (or fails it with
the exception ``func`` raised); when the reader stops the stream, the next ``send``
raises :class:`~helixstream.StreamClosedError`, which ``run`` takes as the signal to
stop. The LangChain recipe: a callback handler whose ``on_llm_new_token`` sends the
token, with ``raise_error = True`` so that this error stops the model run (the model
must stream, e.g. ``ChatOpenAI(model=..., streaming=True)``)::

    from langchain_core.callbacks import BaseCallbackHandler

    class ToChannel(BaseCallbackHandler):
        raise_error = True

        def __init__(self, channel):
            self.channel = channel

        def on_llm_new_token(self, token, **kwargs):
            self.channel.send(token)

    channel = Channel()
    config = {"callbacks": [ToChannel(channel)]}
    threading.Thread(target=channel.run, args=(llm.invoke, question),
                     kwargs={"config": config}, daemon=True).start()

The transformers recipe: a ``TextStreamer`` whose ``on_finalized_text`` sends the text,
and ``model.generate`` run by ``channel.run`` in a thread::

    from transformers import TextStreamer

    class ChannelStreamer(TextStreamer):
        def __init__(self, tokenizer, channel, **decode_kwargs):
            super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
            self.channel = channel

        def on_finalized_text(self, text, stream_end=False):
            if text:
                self.channel.send(text)

    channel = Channel()
    streamer = ChannelStreamer(tokenizer, channel, skip_special_tokens=True)
    threading.Thread(target=channel.run, args=(model.generate,),
                     kwargs=dict(**inputs, streamer=streamer, max_new_tokens=200),
                     daemon=True).start()

``docs/sources.md`` has these recipes in full, with OpenAI, Anthropic, ``requests``,
``httpx``, Ollama, vLLM and llama.cpp.
"""
from __future__ import annotations

from .._errors import UpstreamError
from ._channel import Channel
from ._sdk import SDKSource, from_anthropic, from_openai
from ._sse import SSESource, from_sse

__all__ = [
    "from_openai",
    "from_anthropic",
    "from_sse",
    "Channel",
    "SDKSource",
    "SSESource",
    "UpstreamError",
]
