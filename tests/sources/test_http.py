"""The shared fetching rules (``digest.sources.http.Fetcher``), proved by behaviour.

Most rules are exercised through ``httpx.MockTransport`` with an injected ``sleep`` that records
the delays instead of sleeping. Politeness uses the real clock. Deadlines, timeouts and dropped
connections are checked against real servers on 127.0.0.1 that stop by themselves.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from digest import __version__
from digest.config import HttpSettings
from digest.errors import SourceError
from digest.sources.http import Fetcher

URL = "https://papers.example.org/feed"
SOURCE = "example_source"


# --- helpers ---------------------------------------------------------------------------------


class Script:
    """A MockTransport handler that answers from a list of steps and records every request.

    A step is a status code, a ``(status, headers)`` or ``(status, headers, body)`` tuple, or an
    httpx exception class to raise. The last step repeats once the list is used up.
    """

    def __init__(self, *steps: object) -> None:
        self.steps = steps
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted failure", request=request)
        status, *rest = (step,) if isinstance(step, int) else step
        headers = rest[0] if rest else {}
        body = rest[1] if len(rest) > 1 else b""
        if status == 200 and not body:
            body = b"payload"
        return httpx.Response(status, headers=headers, content=body)


def make_fetcher(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    sleep: Callable[[float], None] | None = None,
    validators: dict[str, tuple[str | None, str | None]] | None = None,
    **settings: object,
) -> Fetcher:
    options: dict[str, object] = {"timeout": 5.0, "retries": 3, "backoff": 2.0}
    options.update(settings)
    return Fetcher(
        HttpSettings(**options),
        transport=httpx.MockTransport(handler),
        validators=validators,
        sleep=sleep if sleep is not None else (lambda _seconds: None),
    )


def http_date(offset_seconds: float) -> str:
    return email.utils.format_datetime(
        datetime.now(UTC) + timedelta(seconds=offset_seconds), usegmt=True
    )


# --- retries and Retry-After -----------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retries_a_temporary_status_then_succeeds(status: int) -> None:
    script = Script(status, status, (200, {}, b"the listing"))
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, retries=3, backoff=1.0) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 3
    assert result.status == 200
    assert result.body == b"the listing"
    assert delays == [1.0, 2.0]  # one wait before each retry, none after the success


def test_retry_after_seconds_sets_the_wait() -> None:
    script = Script((503, {"Retry-After": "7"}), 200)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, backoff=2.0) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
    assert result.status == 200
    assert len(script.requests) == 2
    assert delays == [7.0]  # the server's 7 s, not the 2 s backoff


def test_retry_after_http_date_sets_the_wait() -> None:
    script = Script((429, {"Retry-After": http_date(30)}), 200)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, backoff=2.0) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
    assert result.status == 200
    assert len(script.requests) == 2
    assert len(delays) == 1
    # An HTTP-date has whole seconds, so up to one second is lost; never the 2 s backoff.
    assert 28.0 <= delays[0] <= 30.0


def test_retry_after_in_the_past_retries_at_once() -> None:
    script = Script((503, {"Retry-After": http_date(-60)}), 200)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, backoff=2.0) as fetcher:
        assert fetcher.get(URL, source=SOURCE).status == 200
    assert delays == [0.0]


@pytest.mark.parametrize("value", ["600", "date"])
def test_retry_after_over_the_limit_fails_at_once(value: str) -> None:
    header = http_date(600) if value == "date" else value
    script = Script((503, {"Retry-After": header}), 200)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, max_retry_after=60) as fetcher:
        with pytest.raises(SourceError) as caught:
            fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 1  # no retry, no wait
    assert delays == []
    error = caught.value
    assert error.source == SOURCE
    assert str(error).startswith(f"{SOURCE}: ")
    assert "max_retry_after (60 s)" in str(error)
    expected = ("600 s",) if value == "600" else ("599 s", "600 s")
    assert any(seconds in str(error) for seconds in expected), str(error)


def test_backoff_doubles_without_retry_after_and_gives_up() -> None:
    script = Script(503)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, retries=3, backoff=2.0) as fetcher:
        with pytest.raises(SourceError) as caught:
            fetcher.get(URL, source=SOURCE)
    assert delays == [2.0, 4.0, 8.0]
    assert len(script.requests) == 4  # retries + 1
    message = str(caught.value)
    assert caught.value.source == SOURCE
    assert "gave up after 4 tries" in message
    assert "HTTP 503" in message
    assert URL in message


def test_number_of_tries_follows_the_setting() -> None:
    script = Script(502)
    with make_fetcher(script, retries=1, backoff=0) as fetcher:
        with pytest.raises(SourceError, match=r"HTTP 502 .*gave up after 2 tries"):
            fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 2


def test_not_found_is_not_retried() -> None:
    script = Script(404, 200)
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, retries=3) as fetcher:
        with pytest.raises(SourceError) as caught:
            fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 1
    assert delays == []
    assert caught.value.source == SOURCE
    assert "HTTP 404 Not Found" in str(caught.value)


def test_ok_statuses_return_the_body_of_a_400() -> None:
    explanation = b"<feed><error>bad query</error></feed>"
    script = Script((400, {}, explanation))
    with make_fetcher(script) as fetcher:
        result = fetcher.get(URL, source=SOURCE, ok_statuses=frozenset({200, 400}))
        assert result.status == 400
        assert result.body == explanation
        # without the opt-in the same answer is an error, and is not retried
        with pytest.raises(SourceError, match="HTTP 400"):
            fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 2


def test_transport_errors_are_retried_then_succeed() -> None:
    script = Script(httpx.ConnectError, httpx.ConnectError, (200, {}, b"at last"))
    delays: list[float] = []
    with make_fetcher(script, sleep=delays.append, retries=3, backoff=0.5) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
    assert result.body == b"at last"
    assert len(script.requests) == 3
    assert delays == [0.5, 1.0]


def test_transport_errors_are_reported_after_the_last_try() -> None:
    script = Script(httpx.ConnectError)
    with make_fetcher(script, retries=2, backoff=0) as fetcher:
        with pytest.raises(SourceError) as caught:
            fetcher.get(URL, source=SOURCE)
    assert len(script.requests) == 3
    assert caught.value.source == SOURCE
    assert "connection failed" in str(caught.value)
    assert "gave up after 3 tries" in str(caught.value)


def test_a_timeout_from_the_transport_is_retried() -> None:
    script = Script(httpx.ReadTimeout, 200)
    with make_fetcher(script, retries=1, backoff=0) as fetcher:
        assert fetcher.get(URL, source=SOURCE).status == 200
    assert len(script.requests) == 2


# --- size cap --------------------------------------------------------------------------------

CAP = 4096


class CountingBody:
    """A streamed body that counts how many chunks the client actually pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


def test_body_of_exactly_the_cap_is_accepted() -> None:
    script = Script((200, {}, b"x" * CAP))
    with make_fetcher(script, max_response_bytes=CAP) as fetcher:
        assert len(fetcher.get(URL, source=SOURCE).body) == CAP


def test_declared_length_over_the_cap_fails_before_reading() -> None:
    body = CountingBody(b"x" * 1000, 10)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "10000"}, content=body)

    with make_fetcher(handler, max_response_bytes=CAP) as fetcher:
        with pytest.raises(SourceError) as caught:
            fetcher.get(URL, source=SOURCE)
    assert caught.value.source == SOURCE
    assert "10,000 bytes is over the cap of 4,096" in str(caught.value)
    assert body.pulled == 0


def test_streamed_body_without_length_is_cut_at_the_cap() -> None:
    body = CountingBody(b"x" * 1000, 100)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    with make_fetcher(handler, max_response_bytes=CAP) as fetcher:
        with pytest.raises(SourceError, match="over the cap of 4,096 bytes") as caught:
            fetcher.get(URL, source=SOURCE)
    assert caught.value.source == SOURCE
    assert len(seen) == 1  # an oversized body is not retried
    assert 5 <= body.pulled < 100  # stopped right after crossing the cap, not at the end


def test_gzip_body_is_capped_on_its_decoded_size() -> None:
    decoded = b"abcdefgh" * 5000  # 40,000 bytes
    packed = gzip.compress(decoded)
    assert len(packed) < CAP < len(decoded)

    def handler(request: httpx.Request) -> httpx.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        return httpx.Response(
            200,
            headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))},
            content=iter([packed]),
        )

    with make_fetcher(handler, max_response_bytes=CAP) as fetcher:
        with pytest.raises(SourceError, match=r"over the cap of 4,096 bytes \(decoded\)"):
            fetcher.get(URL, source=SOURCE)
    # the same encoding under a larger cap decodes to the original
    with make_fetcher(handler, max_response_bytes=len(decoded)) as fetcher:
        assert fetcher.get(URL, source=SOURCE).body == decoded


def gzip_with_comment(decoded: bytes, comment_size: int) -> bytes:
    """A valid gzip member whose header carries a long comment (FCOMMENT): big encoded, small
    decoded."""
    plain = gzip.compress(decoded, mtime=0)
    assert plain[3] == 0  # no optional header fields yet
    header = plain[:3] + bytes([0x10]) + plain[4:10]
    return header + b"c" * comment_size + b"\0" + plain[10:]


def test_encoded_length_over_the_cap_is_fine_when_the_decoded_body_is_small() -> None:
    decoded = b"small listing"
    packed = gzip_with_comment(decoded, 3 * CAP)
    assert gzip.decompress(packed) == decoded
    assert len(packed) > CAP > len(decoded)
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(packed))}
    script = Script((200, headers, packed))
    with make_fetcher(script, max_response_bytes=CAP) as fetcher:
        assert fetcher.get(URL, source=SOURCE).body == decoded


def test_corrupt_gzip_is_a_source_error() -> None:
    script = Script((200, {"Content-Encoding": "gzip"}, b"this is not gzip at all"))
    with make_fetcher(script) as fetcher:
        with pytest.raises(SourceError, match="could not decode") as caught:
            fetcher.get(URL, source=SOURCE)
    assert caught.value.source == SOURCE
    assert len(script.requests) == 1


# --- conditional requests --------------------------------------------------------------------

ETAG = '"listing-v1"'
LAST_MODIFIED = "Wed, 24 Sep 2025 20:00:00 GMT"


def conditional_server() -> Script:
    """A handler that answers 304 when the request carries the current validators."""

    class Server(Script):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            if (
                request.headers.get("If-None-Match") == ETAG
                or request.headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                return httpx.Response(304, headers={"ETag": ETAG})
            return httpx.Response(
                200, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED}, content=b"full"
            )

    return Server()


def test_first_answer_teaches_the_validators() -> None:
    server = conditional_server()
    with make_fetcher(server) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
        assert fetcher.learned == {URL: (ETAG, LAST_MODIFIED)}
        assert fetcher.not_modified is False
    assert result.status == 200 and result.body == b"full" and not result.not_modified
    assert "If-None-Match" not in server.requests[0].headers
    assert "If-Modified-Since" not in server.requests[0].headers


def test_learned_validators_make_the_next_run_conditional() -> None:
    server = conditional_server()
    with make_fetcher(server) as first:
        first.get(URL, source=SOURCE)
        learned = first.learned
    with make_fetcher(server, validators=learned) as second:
        result = second.get(URL, source=SOURCE)
        assert second.not_modified is True
    request = server.requests[-1]
    assert request.headers["If-None-Match"] == ETAG
    assert request.headers["If-Modified-Since"] == LAST_MODIFIED
    assert result.status == 304
    assert result.not_modified is True
    assert result.body == b""


def test_validators_only_apply_to_their_url() -> None:
    server = conditional_server()
    other = "https://papers.example.org/other"
    with make_fetcher(server, validators={URL: (ETAG, LAST_MODIFIED)}) as fetcher:
        result = fetcher.get(other, source=SOURCE)
        assert fetcher.not_modified is False
    assert result.status == 200
    assert "If-None-Match" not in server.requests[0].headers


def test_conditional_false_sends_no_validators() -> None:
    server = conditional_server()
    with make_fetcher(server, validators={URL: (ETAG, LAST_MODIFIED)}) as fetcher:
        result = fetcher.get(URL, source=SOURCE, conditional=False)
        assert fetcher.not_modified is False
    request = server.requests[0]
    assert "If-None-Match" not in request.headers
    assert "If-Modified-Since" not in request.headers
    assert result.status == 200 and result.body == b"full"


# --- User-Agent ------------------------------------------------------------------------------


def test_user_agent_names_the_project() -> None:
    script = Script(200)
    with make_fetcher(script) as fetcher:
        fetcher.get(URL, source=SOURCE)
    agent = script.requests[0].headers["User-Agent"]
    assert agent.startswith(f"trending-digest/{__version__}")
    assert "mailto:" not in agent


def test_user_agent_carries_the_contact_when_set() -> None:
    script = Script(200)
    with make_fetcher(script, contact="ops@digest.example") as fetcher:
        fetcher.get(URL, source=SOURCE)
    agent = script.requests[0].headers["User-Agent"]
    assert agent.startswith(f"trending-digest/{__version__}")
    assert agent.endswith("mailto:ops@digest.example")


# --- politeness (real clock, real sleep) -----------------------------------------------------


class Stamps:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, time.monotonic()))
        return httpx.Response(200, content=b"ok")


def test_min_interval_spaces_requests_to_one_host_only() -> None:
    stamps = Stamps()
    a = "https://a.example.org"
    b = "https://b.example.org"
    with Fetcher(
        HttpSettings(timeout=5.0, retries=0), transport=httpx.MockTransport(stamps)
    ) as fetcher:
        # different paths on one host share the host's interval
        for url in (f"{a}/one", f"{b}/one", f"{a}/two", f"{a}/three?page=2"):
            fetcher.get(url, source=SOURCE, min_interval=0.3)
    hosts = [host for host, _ in stamps.seen]
    assert hosts == ["a.example.org", "b.example.org", "a.example.org", "a.example.org"]
    a1, b1, a2, a3 = (stamp for _, stamp in stamps.seen)
    # The fetcher times its turn just before building the request, so the handler's stamp is a
    # hair later than the turn; allow 10 ms for that.
    assert a2 - a1 >= 0.29
    assert a3 - a2 >= 0.29
    assert b1 - a1 < 0.15  # the second host did not wait out the first host's interval


def test_no_min_interval_means_no_waiting() -> None:
    stamps = Stamps()
    with Fetcher(
        HttpSettings(timeout=5.0, retries=0), transport=httpx.MockTransport(stamps)
    ) as fetcher:
        for _ in range(3):
            fetcher.get(URL, source=SOURCE)
    assert stamps.seen[-1][1] - stamps.seen[0][1] < 0.2


# --- real servers on 127.0.0.1 ---------------------------------------------------------------

Behaviour = Callable[[socket.socket, threading.Event], None]
SERVER_LIFETIME = 15.0  # every server stops by itself after this long at the latest


class LocalServer:
    """A TCP server in daemon threads that runs ``behaviour`` on each accepted connection."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/feed"
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        ends = time.monotonic() + SERVER_LIFETIME
        while not self.stop.is_set() and time.monotonic() < ends:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()
        self.stop.set()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):  # the client hung up; nothing more to do
                self.behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(timeout=2)
        self.sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    for _ in range(100):
        if b"\r\n\r\n" in data:
            break
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Callable[[Behaviour], LocalServer]:
    def start(behaviour: Behaviour) -> LocalServer:
        server = LocalServer(behaviour)
        request.addfinalizer(server.close)
        return server

    return start


def test_overall_deadline_stops_a_dripping_server(serve) -> None:
    def drip(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
        )
        for _ in range(100):  # one byte every 0.1 s for up to 10 s
            if stop.wait(0.1):
                return
            conn.sendall(b"x")

    server = serve(drip)
    settings = HttpSettings(timeout=1.0, retries=0, connect_timeout=1.0)
    started = time.monotonic()
    with Fetcher(settings) as fetcher, pytest.raises(SourceError) as caught:
        fetcher.get(server.url, source=SOURCE)
    elapsed = time.monotonic() - started
    # Each read gets a byte within 0.1 s, so a per-read timeout would never fire: only the overall
    # deadline can end this well before the server's 10 s of dripping.
    assert 0.9 <= elapsed < 2.5, elapsed
    assert caught.value.source == SOURCE
    assert "1 s deadline" in str(caught.value)
    assert "gave up after 1 tries" in str(caught.value)
    assert server.connections == 1


def test_silent_server_times_out_on_each_try(serve) -> None:
    def silent(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        stop.wait(5.0)

    server = serve(silent)
    settings = HttpSettings(timeout=0.5, retries=1, backoff=0, connect_timeout=1.0)
    started = time.monotonic()
    with Fetcher(settings) as fetcher, pytest.raises(SourceError) as caught:
        fetcher.get(server.url, source=SOURCE)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5, elapsed  # two tries of 0.5 s
    message = str(caught.value)
    assert caught.value.source == SOURCE
    assert "timed out" in message
    assert "gave up after 2 tries" in message
    assert server.connections == 2


def test_connection_dropped_mid_body_is_retried_and_reported(serve) -> None:
    def truncate(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)

    server = serve(truncate)
    settings = HttpSettings(timeout=2.0, retries=2, backoff=0, connect_timeout=1.0)
    with Fetcher(settings) as fetcher, pytest.raises(SourceError) as caught:
        fetcher.get(server.url, source=SOURCE)
    message = str(caught.value)
    assert caught.value.source == SOURCE
    assert "connection failed" in message
    assert "gave up after 3 tries" in message
    assert server.connections == 3


def test_connection_dropped_once_then_complete_succeeds(serve) -> None:
    answers = iter([b"x" * 100, b"y" * 1000])

    def flaky(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        body = next(answers, b"")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + body)

    server = serve(flaky)
    settings = HttpSettings(timeout=2.0, retries=2, backoff=0, connect_timeout=1.0)
    with Fetcher(settings) as fetcher:
        result = fetcher.get(server.url, source=SOURCE)
    assert result.body == b"y" * 1000
    assert server.connections == 2


def test_overall_deadline_also_covers_dripped_headers(serve) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 40  # 3 s of dripping at 0.05 s a byte

    def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        for i in range(len(head)):
            if stop.wait(0.05):
                return
            conn.sendall(head[i : i + 1])
        conn.sendall(b"\r\nContent-Length: 2\r\n\r\nok")

    server = serve(drip_headers)
    settings = HttpSettings(timeout=1.0, retries=0, connect_timeout=1.0)
    started = time.monotonic()
    with Fetcher(settings) as fetcher, pytest.raises(SourceError):
        fetcher.get(server.url, source=SOURCE)
    assert time.monotonic() - started < 2.5


# --- redirects -----------------------------------------------------------------------------


def redirects(chain: dict[str, str]) -> Callable[[httpx.Request], httpx.Response]:
    """Answers each URL in ``chain`` with a 302 to its value; any other URL with a feed."""

    def handler(request: httpx.Request) -> httpx.Response:
        target = chain.get(str(request.url))
        if target is not None:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, content=b"payload")

    return handler


def test_redirects_within_http_are_followed() -> None:
    chain = {URL: "/feed2", "https://papers.example.org/feed2": "https://mirror.example.org/f"}
    with make_fetcher(redirects(chain)) as fetcher:
        result = fetcher.get(URL, source=SOURCE)
    assert result.status == 200 and result.body == b"payload"
    assert result.url == "https://mirror.example.org/f"


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        (
            {URL: "file:///etc/passwd"},
            "redirected to a non-HTTP address (file:///etc/passwd)",
        ),
        (
            {URL: "http://10.0.0.1:5432/"},
            "redirected to port 5432, which is not a web port (http://10.0.0.1:5432/)",
        ),
        (
            {URL: "https://papers.example.org/b", "https://papers.example.org/b": URL},
            f"redirected in a loop (back to {URL})",
        ),
        (
            {URL if n == 0 else f"{URL}/{n}": f"{URL}/{n + 1}" for n in range(10)},
            f"too many redirects (more than 5, starting at {URL})",
        ),
    ],
    ids=["file", "another port", "loop", "too many"],
)
def test_a_redirect_that_is_not_followed_says_why(chain: dict[str, str], reason: str) -> None:
    handler = redirects(chain)
    with make_fetcher(handler) as fetcher, pytest.raises(SourceError) as info:
        fetcher.get(URL, source=SOURCE)
    assert info.value.reason == reason
    assert "internal error" not in str(info.value) and "Unsupported" not in str(info.value)


def test_a_redirect_to_the_port_the_fetch_started_on_is_followed() -> None:
    start = "http://127.0.0.1:8123/feed"
    chain = {start: "http://127.0.0.1:8123/other"}
    with make_fetcher(redirects(chain)) as fetcher:
        assert fetcher.get(start, source=SOURCE).status == 200
