"""Settings, declared once with their defaults.

Layers, later wins: the defaults below -> a TOML file (``--config PATH``, else
``$DIGEST_CONFIG``, else ``config/digest.toml`` when present) -> ``DIGEST_*`` environment
variables, where ``__`` separates levels: ``DIGEST_DATABASE__URL``,
``DIGEST_SOURCES__ARXIV_RSS__CATEGORIES=cs.LG,cs.CL``.

Every setting here appears in ``config/digest.example.toml`` with its default; a test fails
when one is missing. A wrong setting raises ``ConfigError`` with one line naming the key.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from digest.cron import cron_fields
from digest.errors import ConfigError

ENV_PREFIX = "DIGEST_"
ENV_CONFIG_PATH = "DIGEST_CONFIG"  # names the file; not itself a setting
DEFAULT_CONFIG_PATH = Path("config/digest.toml")


def _split_csv(value: Any) -> Any:
    # Lists from the environment arrive as "a,b,c" (or as JSON, handled before this).
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


StrList = Annotated[list[str], BeforeValidator(_split_csv)]


def check_timezone(value: str) -> str:
    """An IANA zone name, or ValueError naming it."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected e.g. Europe/Berlin)") from None
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


class DatabaseSettings(Section):
    url: str = Field(
        "sqlite:///var/digest.db",
        description="SQLAlchemy URL; SQLite by default, postgresql+psycopg://… for PostgreSQL",
    )
    migrate: bool = Field(
        True, description="apply pending migrations on start; when false, commands refuse to run"
    )
    busy_timeout_ms: int = Field(
        5000, ge=0, description="SQLite: how long a writer waits for a lock, in milliseconds"
    )


class PathSettings(Section):
    var_dir: Path = Field(Path("var"), description="where the program keeps its working files")
    outbox_dir: Path = Field(
        Path("var/outbox"), description="where the file mailer writes .eml and .html previews"
    )
    templates_dir: str = Field(
        "", description="email and web templates; empty: templates/ beside the digest package"
    )


class HttpSettings(Section):
    timeout: float = Field(
        30.0, gt=0, le=600, description="overall deadline per request, in seconds (not per read)"
    )
    connect_timeout: float = Field(10.0, gt=0, le=120, description="TCP/TLS connect timeout")
    max_response_bytes: int = Field(
        25_000_000, ge=1024, description="cap on a decoded response body; larger is an error"
    )
    retries: int = Field(
        3, ge=0, le=10, description="retries after a 429, a 5xx, a timeout or a dropped connection"
    )
    backoff: float = Field(
        2.0, ge=0, le=300, description="first retry delay in seconds; doubles on each retry"
    )
    max_retry_after: float = Field(
        300.0, ge=0, description="longest Retry-After honoured; a longer one fails the fetch"
    )
    user_agent: str = Field(
        "trending-digest/{version} (self-hosted paper digest)",
        min_length=1,
        description="User-Agent sent to sources; {version} is filled in",
    )
    contact: str = Field(
        "", description="an address appended to the User-Agent so sources can reach you"
    )


class HuggingFaceSettings(Section):
    base_url: str = Field("https://huggingface.co", description="Hugging Face site root")
    min_interval: float = Field(1.0, ge=0, description="seconds between requests")


class ArxivRssSettings(Section):
    base_url: str = Field("https://rss.arxiv.org", description="arXiv listing feed root")
    categories: StrList = Field(
        ["cs.LG", "cs.CL", "cs.AI", "cs.CV", "stat.ML"],
        min_length=1,
        description="arXiv categories or archives to follow",
    )
    announce_types: StrList = Field(
        ["new", "cross"],
        min_length=1,
        description="listing entries to keep: new, cross, replace, replace-cross",
    )
    min_interval: float = Field(
        3.0, ge=3.0, description="seconds between requests (arXiv asks for at least 3)"
    )


class ArxivApiSettings(Section):
    base_url: str = Field("https://export.arxiv.org/api/query", description="arXiv API endpoint")
    query: str = Field(
        "cat:cs.LG OR cat:cs.CL", description="search_query; ignored when id_list is set"
    )
    id_list: StrList = Field([], description="fetch exactly these arXiv ids instead of a query")
    max_results: int = Field(200, ge=1, le=30000, description="most papers per fetch")
    page_size: int = Field(100, ge=1, le=2000, description="papers per request (start/max_results)")
    min_interval: float = Field(
        3.0, ge=3.0, description="seconds between requests (arXiv asks for at least 3)"
    )


class SampleSettings(Section):
    listing: str = Field(
        "", description='a JSONL file of {"title", "abstract"} to read instead of the bundled one'
    )


SourceName = Literal["sample", "huggingface", "arxiv_rss", "arxiv_api"]
SOURCE_NAMES: tuple[str, ...] = get_args(SourceName)  # each has a line in sources/base.py


class SourceSettings(Section):
    enabled: Annotated[list[SourceName], BeforeValidator(_split_csv)] = Field(
        ["sample"],
        min_length=1,
        description="sources `digest fetch` reads; the embedded default is the bundled sample",
    )
    huggingface: HuggingFaceSettings = HuggingFaceSettings()
    arxiv_rss: ArxivRssSettings = ArxivRssSettings()
    arxiv_api: ArxivApiSettings = ArxivApiSettings()
    sample: SampleSettings = SampleSettings()


class RankingSettings(Section):
    first_window_hours: float = Field(
        72.0, gt=0, le=24 * 31, description="a first digest looks back this many hours"
    )
    # How papers are scored: digest/ranking/__init__.py and docs/ranking.md. The defaults were
    # chosen on the tuning half of benchmarks/ranking (make bench-ranking reports the other).
    title_weight: float = Field(
        3.0, ge=0, description="a word in the title counts as this many in the abstract"
    )
    abstract_weight: float = Field(1.0, ge=0, description="a word in the abstract counts this much")
    bm25_k1: float = Field(1.6, ge=0, le=5, description="BM25 term-frequency saturation")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation")
    phrase_weight: float = Field(
        1.0, ge=0, le=10, description="a phrase found as written, on top of its words"
    )
    proximity_weight: float = Field(
        0.5, ge=0, le=10, description="a phrase's words found near each other, on top of its words"
    )
    description_weight: float = Field(
        0.5, ge=0, le=10, description="each word of a description (a term longer than a phrase)"
    )
    expansion_papers: int = Field(
        10, ge=0, le=50, description="best papers whose distinctive words expand a reader's terms"
    )
    expansion_weight: float = Field(
        0.3, ge=0, le=1, description="share of relevance that comes from the expansion"
    )
    relative_cut: float = Field(
        0.2, ge=0, lt=1, description="papers under this share of the reader's best are left out"
    )
    author_boost: float = Field(
        10.0, ge=0, description="added when a followed author wrote the paper (a word: ~2-8)"
    )
    category_boost: float = Field(
        3.0, ge=0, description="added when the paper is in a chosen category"
    )
    trending_weight: float = Field(
        0.05, ge=0, description="weight of the Hugging Face upvotes prior (log-scaled)"
    )
    freshness_weight: float = Field(0.02, ge=0, description="weight of how new the paper is")
    freshness_half_life_hours: float = Field(
        48.0, gt=0, description="a paper's freshness halves over this many hours"
    )
    also_trending: int = Field(
        3, ge=0, le=10, description='papers in the optional "also trending today" section'
    )
    second_look_min_upvotes: int = Field(
        20, ge=0, description='"worth another look": upvotes, tripled since sent, reach this'
    )
    semantic: bool = Field(
        True, description="blend in semantic matching when the [semantic] extra is installed"
    )
    semantic_weight: float = Field(
        0.5, ge=0, le=10, description="weight of closeness in meaning to the reader's texts"
    )
    semantic_min_cosine: float = Field(
        0.2, ge=0, lt=1, description="closeness below this cosine adds nothing"
    )
    semantic_expansion_weight: float = Field(
        0.5, ge=0, le=10, description="weight of closeness in meaning to the best papers"
    )
    semantic_expansion_min_cosine: float = Field(
        0.2, ge=0, lt=1, description="closeness to the best papers below this adds nothing"
    )
    semantic_threshold: float = Field(
        0.40, gt=0, le=1, description='cosine from which a pick says "close to" a reader\'s text'
    )


class FeedbackSettings(Section):
    """Learning from "more like this" / "fewer like this" (see digest.feedback)."""

    half_life_days: float = Field(
        60.0, gt=0, description="a choice counts half as much after this many days"
    )
    term_weight: float = Field(
        0.3, ge=0, le=5, description="weight of the strongest word learned from one choice"
    )
    terms_per_paper: int = Field(
        5, ge=1, le=20, description="distinctive words taken from each judged paper"
    )
    max_terms: int = Field(20, ge=0, le=100, description="most learned words kept")
    author_weight: float = Field(
        0.5, ge=0, le=5, description="weight a liked paper gives each of its authors"
    )
    max_authors: int = Field(20, ge=0, le=100, description="most learned authors kept")
    model_min_events: int = Field(
        6, ge=1, description="choices (one a like) before the personal model joins the score"
    )
    model_weight: float = Field(
        0.5, ge=0, le=5, description="what the personal model's words weigh together"
    )
    model_terms: int = Field(
        20, ge=0, le=100, description="words the personal model lifts (half as many push down)"
    )
    liked_texts: int = Field(
        10, ge=0, le=50, description="newest liked papers matched by meaning (semantic extra)"
    )


class SubscriberSettings(Section):
    default_timezone: str = Field("UTC", description="IANA zone for a subscriber who gives none")
    default_hour: int = Field(7, ge=0, le=23, description="local hour a digest is sent by default")
    default_max_papers: int = Field(10, ge=1, le=50, description="papers per mail by default")

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


class MailSettings(Section):
    transport: Literal["file", "smtp"] = Field(
        "file", description="file writes .eml + .html under paths.outbox_dir; smtp sends"
    )
    from_address: str = Field("digest@localhost", description="the From address of every mail")
    from_name: str = Field("Trending Papers", description="the From display name")
    reply_to: str = Field("", description="a Reply-To address; empty for none")
    abstract_chars: int = Field(
        480, ge=80, le=5000, description="abstracts are trimmed at a sentence near this length"
    )
    authors_shown: int = Field(4, ge=1, le=50, description='authors listed before "et al."')

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value:
            return value
        if "@" not in value or any(ch in value for ch in ' <>\r\n,;"'):
            raise ValueError("expected a plain address like digest@example.org")
        return value


class SmtpSettings(Section):
    host: str = Field("localhost", description="SMTP server (your relay)")
    port: int = Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for implicit TLS")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (required), tls (implicit, port 465) or none"
    )
    username: str = Field("", description="login name; empty to send without logging in")
    password: str = Field("", description="login password (prefer DIGEST_SMTP__PASSWORD)")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds for each SMTP command")
    connect_timeout: float = Field(
        10.0, gt=0, le=600, description="seconds to open the TCP (and implicit TLS) connection"
    )
    greeting_timeout: float = Field(
        30.0, gt=0, le=600, description="seconds to wait for the server's 220 greeting"
    )
    data_timeout: float = Field(
        120.0, gt=0, le=1200, description="seconds to wait for the reply after the final dot"
    )
    # One: with PIPELINING a connection renders the next message while the server takes
    # this one in, and a second connection's thread only contends for the interpreter
    # (docs/benchmarks.md, the fourteenth session). Raise it for a distant relay.
    max_connections: int = Field(
        1, ge=1, le=64, description="SMTP connections one worker process sends over at once"
    )
    messages_per_connection: int = Field(
        100, ge=1, description="messages sent over one connection before it is closed and reopened"
    )
    messages_per_second: float = Field(
        0.0, ge=0, description="most messages per second one worker process sends; 0: no limit"
    )


class DkimSettings(Section):
    enabled: bool = Field(False, description="sign outgoing mail with DKIM (needs the key below)")
    selector: str = Field("", description="the DNS selector: the key is at <selector>._domainkey")
    domain: str = Field("", description="the signing domain (d=); empty: mail.from_address's")
    private_key_path: str = Field("", description="PEM file with the RSA private key")


class DeliverySettings(Section):
    unknown_policy: Literal["resend", "hold"] = Field(
        "resend",
        description="a message whose fate is unknown (connection lost after its data): "
        "resend it, or hold it for an operator",
    )
    batch_size: int = Field(20, ge=1, le=1000, description="deliveries one sender claims at once")
    lease_seconds: float = Field(
        900.0, ge=1, description="a claim lasts this long; a dead sender's rows return after it"
    )
    worker_name: str = Field(
        "",
        max_length=100,
        description="a stable name unique to one worker process, so a restart takes back its "
        "own claims at once; empty: host:pid, and claims wait for their lease to run out",
    )
    processes: int = Field(
        0,
        ge=0,
        le=64,
        description="worker processes one `digest worker` runs; 0: one per core",
    )
    poll_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often an idle `digest worker` looks for work"
    )
    retry_base_seconds: float = Field(
        60.0, gt=0, description="first retry delay after a temporary failure; doubles each time"
    )
    retry_max_seconds: float = Field(
        3600.0, gt=0, description="the longest delay between two attempts"
    )
    retry_jitter: float = Field(
        0.2, ge=0, le=1, description="retry delays vary by up to this fraction, at random"
    )
    give_up_hours: float = Field(
        48.0, gt=0, description="a digest still not accepted this long after planning fails"
    )
    daily_cap: int = Field(
        0, ge=0, description="most messages sent per UTC day, all workers together; 0: no cap"
    )
    return_path: str = Field(
        "",
        description="envelope sender (VERP) with {id} for the delivery, e.g. "
        "bounces+{id}@example.org; empty: mail.from_address",
    )
    bounce_limit: int = Field(
        3, ge=1, description="permanent failures or hard bounces before an address is suppressed"
    )
    bounce_window_days: float = Field(
        30.0, gt=0, description="a bounce older than this no longer counts toward the limit"
    )
    bounce_hook_secret: str = Field(
        "", description="shared secret the bounce web hook requires; empty: the hook is off"
    )
    dkim: DkimSettings = DkimSettings()

    @field_validator("return_path")
    @classmethod
    def _verp(cls, value: str) -> str:
        if not value:
            return value
        local, at, domain = value.rpartition("@")
        if not at or "{id}" not in local or not domain or any(c in value for c in ' <>"\r\n,;'):
            raise ValueError("expected an address with {id} in its local part, e.g. b+{id}@x.org")
        return value


class WebSettings(Section):
    base_url: str = Field(
        "http://localhost:8000", description="public address of the web app, used in mail links"
    )
    secret_key: str = Field(
        "", description="signs links in mails; empty: made once and kept in var_dir/secret_key"
    )
    host: str = Field("127.0.0.1", description="address `digest web` and `digest serve` listen on")
    port: int = Field(8000, ge=1, le=65535, description="port `digest web` listens on")
    confirm_days: float = Field(
        7.0, gt=0, le=90, description="a confirmation link works for this many days"
    )
    subscribe_per_client_per_hour: int = Field(
        10, ge=1, description="subscribe form posts allowed per client address per hour"
    )
    confirm_mails_per_address_per_day: int = Field(
        3, ge=1, description="confirmation mails sent to one address per day at most"
    )
    behind_proxy: bool = Field(
        False, description="trust X-Forwarded-For / -Proto from a reverse proxy in front"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c in value for c in ' \r\n<>"'):
            raise ValueError("expected an http:// or https:// address")
        return value.rstrip("/")


class ScheduleSettings(Section):
    fetch_cron: str = Field(
        "30 1,13 * * *",
        description="when `digest serve` fetches (UTC cron): after arXiv's and HF's updates",
    )
    tick_seconds: int = Field(
        60, ge=5, le=3600, description="how often `digest serve` looks for digests that are due"
    )

    @field_validator("fetch_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(**cron_fields(value), timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a cron line (minute hour day month weekday): {exc}") from None
        return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class LoggingSettings(Section):
    format: Annotated[Literal["auto", "text", "json"], BeforeValidator(_lower)] = Field(
        "auto",
        description="auto: coloured lines on a terminal, plain one-line text otherwise; "
        "text; json: one JSON object per line",
    )
    level: Annotated[
        Literal["auto", "debug", "info", "warning", "error"], BeforeValidator(_lower)
    ] = Field(
        "auto",
        description="the least severe event logged; auto: info for serve, worker and web, "
        "warning for one-off commands; -v/--verbose means debug",
    )


class MetricsSettings(Section):
    enabled: bool = Field(True, description="serve Prometheus metrics at /metrics on the web app")
    token: str = Field(
        "",
        description="bearer token /metrics requires; empty: only clients on loopback or "
        "private networks may read it",
    )


class DoctorSettings(Section):
    nameservers: StrList = Field(
        [], description="DNS servers `digest doctor` asks (host or host:port); empty: the system's"
    )
    timeout: float = Field(
        5.0, gt=0, le=60, description="seconds for each DNS query and network check of `doctor`"
    )


class Settings(Section):
    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    http: HttpSettings = HttpSettings()
    sources: SourceSettings = SourceSettings()
    ranking: RankingSettings = RankingSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    subscribers: SubscriberSettings = SubscriberSettings()
    mail: MailSettings = MailSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    delivery: DeliverySettings = DeliverySettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    doctor: DoctorSettings = DoctorSettings()

    @model_validator(mode="after")
    def _lease_covers_a_send(self) -> Settings:
        # A sender starts a message only while its lease outlasts the longest possible send,
        # so a live sender's message is never claimed again by another.
        need = 2 * max_send_seconds(self.smtp)
        if self.delivery.lease_seconds < need:
            raise ValueError(
                f"delivery.lease_seconds must be at least {need:g} (twice the longest SMTP "
                "exchange the smtp timeouts allow)"
            )
        dkim = self.delivery.dkim
        if dkim.enabled and not (dkim.selector and dkim.private_key_path):
            raise ValueError("delivery.dkim.enabled needs selector and private_key_path")
        return self


def max_send_seconds(smtp: SmtpSettings) -> float:
    """The longest one message's SMTP exchange can take with these timeouts: connect, the
    greeting, then at most EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA and RSET, then the
    reply after the final dot."""
    return smtp.connect_timeout + smtp.greeting_timeout + 8 * smtp.timeout + smtp.data_timeout


def load_settings(
    config_path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the layers and validate them; raise ``ConfigError`` naming the bad key."""
    environ = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    data: dict[str, Any] = {}

    path = _config_path(config_path, environ)
    if path is not None:
        data = _read_toml(path)
        for key in _dotted_keys(data):
            origins[key] = str(path)

    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(keys):
            raise ConfigError(f"{name}: empty part in the variable name")
        _set_nested(data, keys, _env_value(raw), name)
        origins[".".join(keys)] = name

    try:
        return Settings.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def _config_path(given: Path | str | None, environ: Mapping[str, str]) -> Path | None:
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if environ.get(ENV_CONFIG_PATH):
        path = Path(environ[ENV_CONFIG_PATH])
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG_PATH}={path}: no such config file")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _env_value(raw: str) -> Any:
    # JSON lists and objects are accepted as is; everything else stays a string for
    # pydantic's lax parsing ("30" -> 30, "true" -> True, "a,b" -> ["a", "b"]).
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def _set_nested(data: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {key} is a value, not a section")
        node = child
    node[keys[-1]] = value


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


# Settings an earlier version had, and what to do instead (an old config names them).
RETIRED = {
    "ranking.relevance_floor": "replaced by ranking.relative_cut (a share of the reader's best "
    "score, 0.2 by default); delete the line",
    "delivery.render_processes": "removed (sending threads render their own messages now); "
    "delete the line",
    "web.preview_days": "removed (the live preview shows a reader's next digest, whose window "
    "is ranking.first_window_hours for a new reader); delete the line",
}


def _describe(exc: PydanticValidationError, origins: Mapping[str, str]) -> str:
    """One line: the first problem, its key, where it came from."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
    # Drop list indexes from the key but keep them in the message.
    key_parts = [part for part in loc if not part.isdigit()]
    key = ".".join(key_parts)
    origin = origins.get(key)
    where = f" [from {origin}]" if origin else ""
    more = len(exc.errors()) - 1
    tail = f" ({more} more problem{'s' if more > 1 else ''})" if more else ""
    if not key:  # a rule across settings (a model validator) names its keys itself
        return f"bad settings: {error['msg'].removeprefix('Value error, ')}{tail}"
    if error["type"] == "extra_forbidden":
        hint = RETIRED.get(key)
        return f"unknown setting {key}{where}{f': {hint}' if hint else ''}{tail}"
    message = error["msg"].removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    if "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return f"bad setting {key}: {message}{where}{tail}"


def iter_settings(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf setting as (dotted key, field info), for docs and the example-config test."""
    leaves: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves.extend(iter_settings(annotation, f"{prefix}{name}."))
        else:
            leaves.append((f"{prefix}{name}", info))
    return leaves


def secret_key(settings: Settings) -> str:
    """The configured secret, or one made once and kept (0600) under ``var_dir``."""
    if settings.web.secret_key:
        if len(settings.web.secret_key) < 16:
            raise ConfigError("bad setting web.secret_key: use at least 16 characters")
        return settings.web.secret_key
    path = Path(settings.paths.var_dir) / "secret_key"
    try:
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        # Exclusive create: two processes starting at once end up with the same key.
        with open(path, "x") as handle:
            handle.write(key)
        path.chmod(0o600)
        return key
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot keep the secret key at {path}: {exc.strerror}") from None
