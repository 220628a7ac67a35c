"""Scraped pages and outbound answers are read within their budget whatever the server compresses.

The decoder is checked with plain bytes; `fetch_page` and `post_json_pinned` against a real
server on 127.0.0.1, so the wire headers and httpx's raw stream are exercised as in production.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

from performance_agent.metrics.scraper import fetch_page
from performance_agent.outbound.bounded import (
    ANSWER_MAX_BYTES,
    MAX_COMPRESSION_RATIO,
    BodyEncodingError,
    BodyTooLargeError,
    BoundedDecoder,
)
from performance_agent.outbound.pinned import PostAnswer, post_json_pinned
from tests.scrape_support import ScriptedServer, scripted_server
from tests.unit.test_target_guard_connection import failure_of, pinned, run

__all__ = ("scripted_server",)

PAGE = b"vllm:num_requests_running 3\n"


def decode_all(encoding: str | None, body: bytes, max_bytes: int, chunk: int = 7) -> bytes:
    decoder = BoundedDecoder(encoding, max_bytes)
    out = b"".join(decoder.feed(body[start : start + chunk]) for start in range(0, len(body), chunk))
    decoder.finish()
    return out


@pytest.mark.parametrize("encoding", [None, "identity", "gzip", "x-gzip", "GZIP", "deflate"])
def test_one_known_encoding_or_none_decodes_exactly(encoding: str | None) -> None:
    plain = PAGE * 100
    body = zlib.compress(plain) if encoding == "deflate" else gzip.compress(plain) if encoding else plain
    if encoding == "identity":
        body = plain
    assert decode_all(encoding, body, 1 << 20) == PAGE * 100


@pytest.mark.parametrize("encoding", ["gzip, gzip", "gzip,deflate", "br", "zstd", "compress", "gzip, br"])
def test_stacked_and_unknown_encodings_are_refused_before_reading(encoding: str) -> None:
    with pytest.raises(BodyEncodingError):
        BoundedDecoder(encoding, 1 << 20)


def test_a_bomb_stops_at_the_budget_with_memory_bounded_by_it() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 KB
    decoder = BoundedDecoder("gzip", 1 << 20)
    produced = 0

    def feed_all() -> None:
        nonlocal produced
        for start in range(0, len(bomb), 4096):
            produced += len(decoder.feed(bomb[start : start + 4096]))

    with pytest.raises(BodyTooLargeError):
        feed_all()
    assert produced <= 1 << 20


def test_compressed_input_larger_than_the_budget_is_refused_too() -> None:
    with pytest.raises(BodyTooLargeError):
        decode_all(None, b"x" * 2048, 1024)


# mtime=0: gzip stamps the current time into its header, and test ids built from the bytes must
# be the same in every pytest-xdist worker.
@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(PAGE, mtime=0)[:-6],
        gzip.compress(PAGE, mtime=0) + b"trailing",
        b"not gzip at all",
        gzip.compress(PAGE, mtime=0) * 2,
    ],
    ids=["truncated", "trailing", "not-gzip", "two-members"],
)
def test_broken_truncated_or_trailing_streams_are_refused(body: bytes) -> None:
    with pytest.raises(BodyEncodingError):
        decode_all("gzip", body, 1 << 20)


def test_the_scrape_asks_for_no_compression(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", PAGE)
    target = pinned(f"{scripted_server.endpoint}/metrics")
    page = run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=1024))
    assert page.text == PAGE.decode()
    assert scripted_server.header_of(0, "Accept-Encoding") == "identity"


def test_a_gzip_page_is_decoded_and_its_size_is_the_decoded_size(scripted_server: ScriptedServer) -> None:
    scripted_server.serve("/metrics", gzip.compress(PAGE * 10), headers={"Content-Encoding": "gzip"})
    target = pinned(f"{scripted_server.endpoint}/metrics")
    page = run(lambda clients: fetch_page(clients, target, headers={}, timeout_s=5, max_bytes=1024))
    assert page.text == (PAGE * 10).decode()
    assert page.size_bytes == len(PAGE * 10)


def test_stacked_gzip_is_an_invalid_page_naming_the_encoding(scripted_server: ScriptedServer) -> None:
    body = gzip.compress(gzip.compress(gzip.compress(b"\0" * (1 << 20))))
    scripted_server.serve("/metrics", body, headers={"Content-Encoding": "gzip, gzip, gzip"})
    failure = failure_of(pinned(f"{scripted_server.endpoint}/metrics"))
    assert failure.reason == "upstream_invalid_metrics"
    assert "stacked" in failure.message


def test_a_gzip_bomb_is_refused_at_the_decompressed_budget(scripted_server: ScriptedServer) -> None:
    body = gzip.compress(b"# " + b"a" * (32 << 20) + b"\n")
    scripted_server.serve("/metrics", body, headers={"Content-Encoding": "gzip"})
    failure = failure_of(pinned(f"{scripted_server.endpoint}/metrics"), max_bytes=1 << 20)
    assert failure.reason == "upstream_invalid_metrics"
    assert "PERF_AGENT_SCRAPE_MAX_BYTES" in failure.message
    assert "once decompressed" in failure.message


def post_answer(server: ScriptedServer, path: str) -> PostAnswer:
    target = pinned(f"{server.endpoint}{path}")
    return run(lambda clients: post_json_pinned(clients, target, b"{}", timeout_s=5))


def test_a_webhook_answer_is_read_only_up_to_the_cap() -> None:
    server = ScriptedServer().start()
    try:
        server.serve("/hook", b"e" * (8 << 20), status=500)
        answer = post_answer(server, "/hook")
        assert answer.status_code == 500
        assert len(answer.text) == ANSWER_MAX_BYTES
        assert server.header_of(0, "Accept-Encoding") == "identity"
        bomb = gzip.compress(b"\0" * (64 << 20))
        server.serve("/bomb", bomb, status=502, headers={"Content-Encoding": "gzip"})
        answer = post_answer(server, "/bomb")
        assert (answer.status_code, len(answer.text)) == (502, ANSWER_MAX_BYTES)
        server.serve("/stacked", gzip.compress(bomb), status=502, headers={"Content-Encoding": "gzip, gzip"})
        answer = post_answer(server, "/stacked")
        assert answer.status_code == 502
        assert "stacked" in answer.text
    finally:
        server.stop()


def test_a_bomb_is_refused_by_its_ratio_after_little_work() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    decoder = BoundedDecoder("gzip", 32 << 20)
    with pytest.raises(BodyEncodingError, match=f"more than {MAX_COMPRESSION_RATIO}:1"):
        decoder.feed(bomb[:65536])


def test_a_realistic_page_compresses_far_below_the_ratio() -> None:
    page = b"".join(
        b'vllm:e2e_request_latency_seconds_bucket{le="%d.0",model_name="meta-llama/Llama-3.1-8B"} 0\n' % edge
        for edge in range(200_000)
    )
    assert decode_all("gzip", gzip.compress(page), 32 << 20, chunk=65536) == page
