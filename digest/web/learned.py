"""What a reader's feedback taught, shaped for the pages (preferences, feedback answers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from digest.domain.profiles import Learned, LearnedTerm, Profile

SHOWN_MODEL_TERMS = 8


@dataclass(frozen=True, slots=True)
class Item:
    label: str  # shown
    value: str  # posted back to remove it
    strength: str  # "strong", "medium", "light": how much it counts now


@dataclass(frozen=True, slots=True)
class LearnedView:
    likes: int
    dislikes: int
    more: tuple[Item, ...]  # words that lift papers
    fewer: tuple[Item, ...]  # words that push papers down
    authors: tuple[Item, ...]
    model_on: bool
    model_off: bool  # switched off by the reader
    model_terms: tuple[Item, ...]  # the model's strongest words, for a glimpse
    model_needs: int  # choices still needed before the model starts (0: enough)
    removed: int  # words and authors the reader took away

    @property
    def empty(self) -> bool:
        return not (self.likes or self.dislikes or self.removed or self.model_off)


def _strength(weight: float, base: float) -> str:
    share = abs(weight) / base if base else 0.0
    return "strong" if share >= 0.66 else "medium" if share >= 0.33 else "light"


def _items(terms: tuple[LearnedTerm, ...], fade: float, sign: int) -> tuple[Item, ...]:
    chosen = [t for t in terms if t.weight * sign > 0]
    base = max((abs(t.weight) for t in chosen), default=0.0)
    return tuple(Item(t.text, t.text, _strength(t.weight * fade, base)) for t in chosen)


def view(profile: Profile, now: datetime, model_min_events: int) -> LearnedView:
    learned: Learned = profile.learned
    fade = learned.decay(now)
    authors_base = max((a.weight for a in learned.authors), default=0.0)
    model = tuple(t for t in learned.model if t.weight > 0)[:SHOWN_MODEL_TERMS]
    needs = (
        0
        if learned.likes and learned.events >= model_min_events
        else max(model_min_events - learned.events, 0 if learned.likes else 1)
    )
    return LearnedView(
        likes=learned.likes,
        dislikes=learned.dislikes,
        more=_items(learned.terms, fade, 1),
        fewer=_items(learned.terms, fade, -1),
        authors=tuple(
            Item(a.name, a.name, _strength(a.weight * fade, authors_base)) for a in learned.authors
        ),
        model_on=learned.model_on,
        model_off=learned.model_off,
        model_terms=tuple(Item(t.text, t.text, "medium") for t in model),
        model_needs=needs,
        removed=len(learned.removed_terms) + len(learned.removed_authors),
    )
