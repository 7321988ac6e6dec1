"""Fetching rules shared by every source.

- an overall deadline per request, however slowly the server sends its headers or body;
- a cap on the decoded body size;
- retries with exponential backoff on 429, 5xx, timeouts and dropped connections, honouring
  ``Retry-After`` (tenacity);
- a minimum interval between requests to one host (arXiv asks for 3 s);
- conditional requests (ETag / If-Modified-Since) from validators the caller keeps;
- a User-Agent that names the project;
- redirects followed only to http(s) addresses on the web's ports (or the port the fetch
  started on), at most ``MAX_REDIRECTS`` of them, each refusal said in words.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from digest import __version__
from digest.config import HttpSettings
from digest.errors import SourceError

Validators = dict[str, tuple[str | None, str | None]]  # url -> (etag, last-modified)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
_WEB_PORTS = {"http": 80, "https": 443}


@dataclass(slots=True)
class FetchResult:
    url: str
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=httpx.Headers)  # case-insensitive
    not_modified: bool = False


class _Retryable(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if it gave one."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class Fetcher:
    """One HTTP client for a fetch run. Inject ``transport`` in tests; ``sleep``/``clock`` too."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        validators: Validators | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.validators: Validators = dict(validators or {})
        self.learned: Validators = {}  # validators seen in this run, for the caller to keep
        self.not_modified = False  # some answer in this run was 304 Not Modified
        self.sleep = sleep
        self.clock = clock
        self._last_request: dict[str, float] = {}
        agent = settings.user_agent.format(version=__version__)
        if settings.contact:
            agent += f" mailto:{settings.contact}"
        self.client = httpx.Client(
            transport=transport,
            headers={"User-Agent": agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,  # followed by hand, within http(s): see _next_hop
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        source: str,
        params: Mapping[str, str | int] | None = None,
        min_interval: float = 0.0,
        conditional: bool = True,
        ok_statuses: frozenset[int] = frozenset({200}),
    ) -> FetchResult:
        """GET with the shared rules; raises ``SourceError`` naming ``source`` on failure.

        ``ok_statuses`` lists statuses whose body the caller wants to read (the arXiv API
        explains a bad query in the Atom body of a 400).
        """
        full_url = str(httpx.URL(url, params=params))

        def attempt() -> FetchResult:
            self._wait_turn(full_url, min_interval)
            return self._once(full_url, source, conditional, ok_statuses)

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=self._backoff,
            retry=retry_if_exception_type(_Retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            tries = self.settings.retries + 1
            raise SourceError(
                source, f"{exc.reason} (gave up after {tries} tries: {full_url})"
            ) from None

    # -- internals --------------------------------------------------------------------

    def _wait_turn(self, url: str, min_interval: float) -> None:
        host = urlsplit(url).netloc
        last = self._last_request.get(host)
        if last is not None and min_interval > 0:
            delay = last + min_interval - self.clock()
            if delay > 0:
                self.sleep(delay)
        self._last_request[host] = self.clock()

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.wait is not None:
            return error.wait
        return self.settings.backoff * (2 ** (state.attempt_number - 1))

    def _once(
        self, url: str, source: str, conditional: bool, ok_statuses: frozenset[int]
    ) -> FetchResult:
        """One exchange, bounded by the overall deadline however slowly the server talks.

        httpx bounds each read, not the whole answer, so a server dripping its headers
        could hold a fetch open for ever; the exchange runs in a daemon thread that is
        abandoned at the deadline (its socket then ends at the next read timeout).
        """
        outcome: dict[str, FetchResult | BaseException] = {}

        def exchange() -> None:
            try:
                outcome["result"] = self._exchange(url, source, conditional, ok_statuses)
            except BaseException as exc:  # handed to the caller's thread below
                outcome["error"] = exc

        worker = threading.Thread(target=exchange, name=f"fetch {source}", daemon=True)
        worker.start()
        worker.join(self.settings.timeout + 0.05)
        if worker.is_alive():
            raise _Retryable(f"no complete answer within the {self.settings.timeout:g} s deadline")
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        assert isinstance(result, FetchResult)
        if result.not_modified:
            self.not_modified = True
        found = (result.headers.get("ETag"), result.headers.get("Last-Modified"))
        if result.status == 200 and any(found):
            self.learned[url] = found
        return result

    def _exchange(
        self, url: str, source: str, conditional: bool, ok_statuses: frozenset[int]
    ) -> FetchResult:
        headers: dict[str, str] = {}
        etag, last_modified = self.validators.get(url, (None, None))
        if conditional and etag:
            headers["If-None-Match"] = etag
        if conditional and last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = self.clock() + self.settings.timeout
        start = httpx.URL(url)
        seen = {start}
        try:
            while True:
                with self.client.stream("GET", url, headers=headers) as response:
                    if not response.has_redirect_location:
                        return self._answer(response, url, source, ok_statuses, deadline)
                    target = self._next_hop(response, start, seen, source)
                seen.add(target)
                url = str(target)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"connection failed: {exc or type(exc).__name__}") from None
        except httpx.DecodingError as exc:
            raise SourceError(source, f"could not decode the response: {exc}") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise SourceError(source, f"not an address that can be fetched ({exc})") from None

    def _next_hop(
        self, response: httpx.Response, start: httpx.URL, seen: set[httpx.URL], source: str
    ) -> httpx.URL:
        """Where a redirect points, if it may be followed; a ``SourceError`` saying why not.

        Only http(s), on the web's ports or the one the fetch started on: a feed has no
        business sending us to ``file://`` or to some other service's port."""
        location = response.headers.get("Location", "").strip()
        try:
            target = response.url.join(location) if location else None
        except httpx.InvalidURL:
            target = None
        if target is None:
            problem = f"a redirect to an unreadable address ({location!r})"
        elif target.scheme not in _WEB_PORTS:
            problem = f"redirected to a non-HTTP address ({location})"
        elif (target.port or _WEB_PORTS[target.scheme]) not in (
            _WEB_PORTS[target.scheme],
            start.port or _WEB_PORTS[start.scheme],
        ):
            problem = f"redirected to port {target.port}, which is not a web port ({target})"
        elif target in seen:
            problem = f"redirected in a loop (back to {target})"
        elif len(seen) > MAX_REDIRECTS:
            problem = f"too many redirects (more than {MAX_REDIRECTS}, starting at {start})"
        else:
            return target
        raise SourceError(source, problem)

    def _answer(
        self,
        response: httpx.Response,
        url: str,
        source: str,
        ok_statuses: frozenset[int],
        deadline: float,
    ) -> FetchResult:
        """The result of a final (not a redirect) answer."""
        status = response.status_code
        if status == 304:
            return FetchResult(url, status, headers=response.headers, not_modified=True)
        if status in RETRY_STATUSES:
            wait = self._retry_after(response.headers.get("Retry-After"), source)
            raise _Retryable(f"HTTP {status} {response.reason_phrase}", wait)
        if status not in ok_statuses:
            raise SourceError(source, f"HTTP {status} {response.reason_phrase} from {url}")
        body = self._read_body(response, deadline, source)
        return FetchResult(url, status, body, response.headers)

    def _read_body(self, response: httpx.Response, deadline: float, source: str) -> bytes:
        cap = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length")
        if (
            declared
            and declared.isdigit()
            and int(declared) > cap
            and not response.headers.get("Content-Encoding")
        ):
            raise SourceError(
                source, f"response of {int(declared):,} bytes is over the cap of {cap:,}"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise SourceError(source, f"response is over the cap of {cap:,} bytes (decoded)")
            if self.clock() > deadline:
                raise _Retryable(
                    f"response not complete within the {self.settings.timeout:g} s deadline"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _retry_after(self, value: str | None, source: str) -> float | None:
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
        if seconds > self.settings.max_retry_after:
            raise SourceError(
                source,
                f"server asked to retry after {seconds:.0f} s, "
                f"more than http.max_retry_after ({self.settings.max_retry_after:g} s)",
            )
        return seconds
