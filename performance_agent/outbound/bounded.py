"""Reading an outbound answer's body within a byte budget, decompressed by the agent itself.

Why here: scrapes, actuator webhooks and the Alertmanager webhook all read answers from servers
someone else runs, and each must stay bounded whatever the server sends (a `Content-Length` it
lies about, a decompression bomb, stacked encodings). The agent asks for `identity`; a server
that compresses anyway may use one known coding, undone here within the budget.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = (
    "ACCEPT_ENCODING",
    "ANSWER_MAX_BYTES",
    "MAX_COMPRESSION_RATIO",
    "BodyEncodingError",
    "BodyTooLargeError",
    "BoundedDecoder",
    "read_answer_head",
    "read_bounded",
)

_CHUNK = 64 * 1024
#: Bytes of an outbound call's answer (webhook, Alertmanager) that are ever read: only the status
#: and the start of an error text are used, so a receiver cannot make the agent buffer more.
ANSWER_MAX_BYTES = 16 * 1024
#: Asking for no compression; a server that compresses anyway may use one of `_ZLIB_WINDOW`.
ACCEPT_ENCODING = "identity"
#: Output of one inflate call: a bomb is caught after this much work, and memory stays small.
_INFLATE_SLICE = 256 * 1024
#: Text metric pages compress about 10:1 with gzip (a very repetitive one maybe 50:1); only a
#: bomb inflates beyond this, checked once 1 MiB has come out.
MAX_COMPRESSION_RATIO = 200
_RATIO_FLOOR = 1024 * 1024
#: zlib window bits by HTTP content coding: gzip framing, zlib framing (HTTP's "deflate").
_ZLIB_WINDOW = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLargeError(Exception):
    """The body, once decompressed, is larger than the budget; reading stopped there."""


class BodyEncodingError(Exception):
    """The body's `Content-Encoding` is stacked, unknown, or its compressed stream is broken."""


class BoundedDecoder:
    """Undoes at most one known content coding, never producing more than `max_bytes` in total.

    Why not httpx's own decoding: it inflates every chunk whole, so a 1 MB gzip page becomes
    1 GiB in memory before any cap is looked at, and it undoes `gzip, gzip, gzip` layer by layer
    (a 278-byte answer costing gigabytes). Here the output of each `feed` is capped by zlib
    itself (`max_length`), so memory stays within the budget whatever the ratio.
    """

    def __init__(self, content_encoding: str | None, max_bytes: int, *, truncate: bool = False) -> None:
        codings = [part.strip().lower() for part in (content_encoding or "").split(",") if part.strip()]
        codings = [coding for coding in codings if coding != "identity"]
        if len(codings) > 1:
            raise BodyEncodingError(f"stacked content encodings ({content_encoding}) are refused")
        if codings and codings[0] not in _ZLIB_WINDOW:
            raise BodyEncodingError(f"the content encoding {codings[0]!r} is not supported (gzip or deflate)")
        self._inflater = zlib.decompressobj(_ZLIB_WINDOW[codings[0]]) if codings else None
        #: Whether `feed` inflates: 10 MB of output costs about 100 ms of CPU, so callers on the
        #: event loop run it in a thread (zlib releases the GIL while it inflates).
        self.compressed = self._inflater is not None
        self._left = max_bytes
        self._raw_left = max_bytes
        #: Whether the budget is spent; with `truncate`, output stops there instead of raising.
        self.full = False
        self._truncate = truncate
        self._consumed = 0
        self._inflated = 0

    def _over_budget(self) -> None:
        if not self._truncate:
            raise BodyTooLargeError
        self.full = True

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next raw `data`; raises `BodyTooLargeError` past the budget."""
        if self.full:
            return b""
        self._raw_left -= len(data)
        if self._raw_left < 0:
            self._over_budget()
            data = data[: len(data) + self._raw_left]
        out = data if self._inflater is None else self._inflate(data)
        if len(out) > self._left:
            self._over_budget()
            out = out[: self._left]
        self._left -= len(out)
        return out

    def _inflate(self, data: bytes) -> bytes:
        """Inflate in slices of `_INFLATE_SLICE`, stopping past the budget or at a bomb's ratio."""
        inflater = self._inflater
        assert inflater is not None
        parts: list[bytes] = []
        produced = 0
        while True:
            if inflater.eof:
                if data:
                    raise BodyEncodingError("data follows the end of the compressed stream")
                break
            try:
                part = inflater.decompress(data, min(self._left - produced + 1, _INFLATE_SLICE))
            except zlib.error as exc:
                raise BodyEncodingError(f"the compressed stream is broken: {exc}") from None
            self._consumed += len(data) - len(inflater.unconsumed_tail)
            data = inflater.unconsumed_tail
            parts.append(part)
            produced += len(part)
            self._inflated += len(part)
            if produced > self._left:
                break
            if self._inflated > _RATIO_FLOOR and self._inflated > MAX_COMPRESSION_RATIO * self._consumed:
                raise BodyEncodingError(
                    f"the answer inflates more than {MAX_COMPRESSION_RATIO}:1, as only a decompression bomb does"
                )
            if not data:
                break
        if inflater.eof and inflater.unused_data:
            raise BodyEncodingError("data follows the end of the compressed stream")
        return b"".join(parts)

    def finish(self) -> None:
        if self._inflater is not None and not self.full and not self._inflater.eof:
            raise BodyEncodingError("the compressed stream ends early")


async def read_bounded(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body, decoded, of at most `max_bytes`; `BodyTooLargeError` or `BodyEncodingError` otherwise.

    A declared `Content-Length` over the budget is refused before any byte is read.
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLargeError(f"{declared} bytes declared")
    decoder = BoundedDecoder(response.headers.get("content-encoding"), max_bytes)
    chunks: list[bytes] = []
    async for chunk in response.aiter_raw(_CHUNK):
        chunks.append(await asyncio.to_thread(decoder.feed, chunk) if decoder.compressed else decoder.feed(chunk))
    decoder.finish()
    return b"".join(chunks)


async def read_answer_head(response: httpx.Response, max_bytes: int = ANSWER_MAX_BYTES) -> str:
    """At most `max_bytes` of an answer's text, decompressed within that cap; the rest is never read."""
    head = bytearray()
    try:
        decoder = BoundedDecoder(response.headers.get("content-encoding"), max_bytes, truncate=True)
        async for chunk in response.aiter_raw(_CHUNK):
            head += await asyncio.to_thread(decoder.feed, chunk) if decoder.compressed else decoder.feed(chunk)
            if decoder.full:
                break
    except BodyEncodingError as exc:
        return f"(answer not read: {exc})"
    return head.decode("utf-8", errors="replace")
