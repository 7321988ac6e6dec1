"""Learning from feedback (digest.feedback) and how the Ranker uses what was learned.

Pure: hand-made papers, no database. The end-to-end path (mail link -> web POST -> the next
digest) is in test_feedback_web.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from digest.config import FeedbackSettings, RankingSettings
from digest.domain.items import PaperCard, Reason
from digest.domain.learning import (
    Event,
    Vocabulary,
    distinctive_terms,
    fit_logistic,
    learn,
)
from digest.domain.profiles import (
    Learned,
    LearnedAuthor,
    LearnedTerm,
    Profile,
    build_profile,
    term_id,
)
from digest.ranking import Ranker, RankRequest
from digest.ranking.semantic import LIKED_OFFSET, SemanticMatch, profile_texts

NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)
SETTINGS = FeedbackSettings()
NO_PRIOR = RankingSettings(trending_weight=0.0, freshness_weight=0.0)

TOPICS = {
    "pruning": (
        "Structured pruning of convolutional networks",
        "We prune channels and filters to compress networks; pruning keeps accuracy while "
        "sparsity grows, and magnitude pruning beats random pruning.",
    ),
    "quantization": (
        "Quantization of language models to four bits",
        "Post-training quantization with outlier channels; quantization error stays small and "
        "the compressed model runs faster.",
    ),
    "speech": (
        "Self-supervised speech recognition",
        "Speech representations learned from raw audio improve recognition of spoken words "
        "with little labelled speech.",
    ),
    "galaxies": (
        "Galaxy morphology from telescope images",
        "We classify galaxies from telescope surveys; morphology and redshift of galaxies "
        "follow from the images.",
    ),
    "proteins": (
        "Protein structure prediction with equivariant networks",
        "Protein folding is predicted from sequences; the structure of each protein follows "
        "from residue contacts.",
    ),
}


LEADS = ("Ann Pruner", "Quinn Quant", "Sam Speech", "Gal Axy", "Pro Tein")


def card(paper_id: int, title: str, abstract: str, **fields: Any) -> PaperCard:
    fields.setdefault("first_seen_at", NOW - timedelta(hours=2))
    return PaperCard(paper_id, f"test/{paper_id}", None, title, abstract, **fields)


def corpus() -> list[PaperCard]:
    """Five topics, four papers each, plus filler: enough for document frequencies."""
    cards = []
    for t, (title, abstract) in enumerate(TOPICS.values()):
        for k in range(4):
            cards.append(
                card(
                    t * 10 + k + 1,
                    f"{title} ({k})",
                    abstract,
                    authors=(LEADS[t], f"Helper{k} Person{t}"),
                )
            )
    return cards


CARDS = corpus()
BY_ID = {c.paper_id: c for c in CARDS}


def events(*choices: tuple[int, int], age_days: float = 0.0) -> list[Event]:
    return [Event(BY_ID[pid], value, NOW - timedelta(days=age_days)) for pid, value in choices]


def texts(terms: tuple[LearnedTerm, ...]) -> dict[str, float]:
    return {t.text.lower(): t.weight for t in terms}


# -- what is learned ----------------------------------------------------------------------


def test_a_liked_papers_distinctive_words_and_authors_are_learned_modestly() -> None:
    learned = learn(events((1, 1)), CARDS, SETTINGS, NOW)
    words = texts(learned.terms)
    assert "pruning" in words and words["pruning"] > 0
    assert max(words.values()) == pytest.approx(SETTINGS.term_weight)  # modest: the base weight
    assert "galaxies" not in words and "we" not in words  # off-topic and stop words are not
    assert {a.name for a in learned.authors} == {"Ann Pruner", "Helper0 Person0"}
    assert all(a.weight == pytest.approx(SETTINGS.author_weight) for a in learned.authors)
    assert learned.likes == 1 and learned.dislikes == 0 and learned.model == ()
    assert learned.liked[0].canonical_id == "test/1"


def test_a_dislike_pushes_its_words_down_but_never_makes_an_author_negative() -> None:
    learned = learn(events((21, -1)), CARDS, SETTINGS, NOW)
    words = texts(learned.terms)
    assert words and all(weight < 0 for weight in words.values())
    assert "speech" in words
    assert learned.authors == ()


def test_the_latest_choice_on_a_paper_wins() -> None:
    first = Event(BY_ID[1], 1, NOW - timedelta(days=2))
    then = Event(BY_ID[1], -1, NOW - timedelta(days=1))
    learned = learn([first, then], CARDS, SETTINGS, NOW)
    assert learned.likes == 0 and learned.dislikes == 1


def test_weights_decay_with_the_age_of_the_feedback() -> None:
    fresh = texts(learn(events((1, 1)), CARDS, SETTINGS, NOW).terms)
    old = learn(events((1, 1), age_days=SETTINGS.half_life_days), CARDS, SETTINGS, NOW)
    assert texts(old.terms)["pruning"] == pytest.approx(fresh["pruning"] / 2, rel=1e-3)
    # Stored weights are as of learning; they keep fading afterwards, by the same rule.
    assert old.decay(NOW + timedelta(days=SETTINGS.half_life_days)) == pytest.approx(0.5)


def test_words_many_liked_papers_share_grow_and_stay_capped() -> None:
    one = texts(learn(events((1, 1)), CARDS, SETTINGS, NOW).terms)
    four = texts(learn(events((1, 1), (2, 1), (3, 1), (4, 1)), CARDS, SETTINGS, NOW).terms)
    assert four["pruning"] > one["pruning"]
    assert max(abs(w) for w in four.values()) <= 2 * SETTINGS.term_weight + 1e-9


def test_distinctive_terms_prefer_rare_words() -> None:
    vocabulary = Vocabulary(CARDS)
    best = [stem for stem, _score in distinctive_terms(BY_ID[31], vocabulary, 3)]
    assert "galaxi" in best
    assert all(score <= 1.0 for _s, score in distinctive_terms(BY_ID[31], vocabulary, 5))


def test_the_learned_state_round_trips_through_json() -> None:
    learned = learn(events((1, 1), (21, -1)), CARDS, SETTINGS, NOW)
    again = Learned.from_json(json.loads(json.dumps(learned.to_json())))
    assert again.terms == tuple(replace(t, weight=round(t.weight, 4)) for t in learned.terms)
    assert again.as_of == NOW and again.likes == 1 and again.dislikes == 1
    assert Learned.from_json({"terms": [{"text": "x", "weight": "bad"}], "likes": 2}).terms == ()


def test_removed_words_and_authors_are_never_learned_again() -> None:
    previous = Learned(removed_terms=(term_id("pruning"),), removed_authors=("pruner a",))
    learned = learn(events((1, 1)), CARDS, SETTINGS, NOW, previous)
    assert "pruning" not in texts(learned.terms)
    assert "Ann Pruner" not in {a.name for a in learned.authors}
    assert learned.removed_terms == previous.removed_terms  # carried over


# -- the per-reader model -----------------------------------------------------------------


def many_choices() -> list[Event]:
    return events((1, 1), (2, 1), (11, 1), (12, 1), (21, -1), (31, -1))


def test_the_model_starts_after_enough_feedback_with_a_like() -> None:
    five = events((1, 1), (2, 1), (11, 1), (21, -1), (31, -1))
    assert learn(five, CARDS, SETTINGS, NOW).model == ()
    six = learn(many_choices(), CARDS, SETTINGS, NOW)
    assert six.model_on
    lifts = {t.text.lower() for t in six.model if t.weight > 0}
    pushes = {t.text.lower() for t in six.model if t.weight < 0}
    assert lifts & {"pruning", "quantization", "compress", "compressed"}
    assert not lifts & {"speech", "galaxies"}
    assert pushes  # what the reader turned down, and what they never chose
    assert sum(t.weight for t in six.model if t.weight > 0) == pytest.approx(SETTINGS.model_weight)
    only_dislikes = events((21, -1), (22, -1), (23, -1), (31, -1), (32, -1), (33, -1))
    assert learn(only_dislikes, CARDS, SETTINGS, NOW).model == ()


def test_the_model_is_deterministic() -> None:
    first = learn(many_choices(), CARDS, SETTINGS, NOW).to_json()
    again = learn(list(reversed(many_choices())), list(reversed(CARDS)), SETTINGS, NOW).to_json()
    assert first == again


def test_the_model_can_be_switched_off() -> None:
    learned = learn(many_choices(), CARDS, SETTINGS, NOW, Learned(model_off=True))
    assert learned.model == () and learned.model_off


def test_logistic_regression_separates_what_it_can() -> None:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]))
    labels = np.array([1.0, 1.0, -1.0, -1.0])
    coefficients = fit_logistic(matrix, labels, np.ones(4))
    assert coefficients[0] > 0 > coefficients[1]


# -- what the ranker does with it -------------------------------------------------------


def learned_profile(*terms: tuple[str, float], **fields: Any) -> Profile:
    learned = Learned(
        terms=tuple(LearnedTerm(text, weight) for text, weight in terms),
        as_of=NOW,
        half_life_days=60,
        **fields,
    )
    base = fields.pop("base", None) or Profile()
    return base.with_extra(learned=learned.to_json())


def rank(profile: Profile, cards: list[PaperCard] | None = None) -> list[int]:
    items = Ranker(cards or CARDS, NO_PRIOR, NOW).rank([RankRequest(profile, 50)])[0]
    return [item.paper_id for item in items]


def test_a_negative_learned_word_pushes_a_paper_under_the_floor_but_never_lets_one_in() -> None:
    base = build_profile(include=["networks"])
    listed = rank(base)
    assert 1 in listed and 41 in listed  # pruning and protein papers both say "networks"
    pushed = base.with_extra(
        learned=Learned(terms=(LearnedTerm("pruning", -0.8),), as_of=NOW).to_json()
    )
    assert 1 not in rank(pushed) and 41 in rank(pushed)
    alone = Profile().with_extra(
        learned=Learned(terms=(LearnedTerm("pruning", -0.8),), as_of=NOW).to_json()
    )
    assert not alone.has_topics  # only pushes: the reader gets the trending list as before


def test_positive_learned_words_let_in_papers_that_match_several() -> None:
    profile = Profile().with_extra(
        learned=Learned(
            terms=(LearnedTerm("pruning", 0.5), LearnedTerm("channels", 0.3)), as_of=NOW
        ).to_json()
    )
    assert profile.has_topics
    items = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(profile, 50)])[0]
    assert {item.paper_id for item in items} == {1, 2, 3, 4}
    assert items[0].reasons[0].kind == "learned"
    assert items[0].reasons[0].label == "pruning"
    assert "pruning" in items[0].highlight  # the mail highlights what was learned too


def test_an_explicit_term_keeps_its_own_weight() -> None:
    explicit = build_profile(include=["speech"])
    with_learned = explicit.with_extra(
        learned=Learned(terms=(LearnedTerm("speech", -2.0),), as_of=NOW).to_json()
    )
    plain = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(explicit, 50)])[0]
    again = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(with_learned, 50)])[0]
    assert [(i.paper_id, i.score) for i in plain] == [(i.paper_id, i.score) for i in again]


def test_a_learned_word_inside_the_readers_phrase_keeps_the_phrases_weight() -> None:
    """ "pruning" is one of the phrase's word units: the reader named it, so a learned
    weight for it counts for nothing (in a batch too, among readers without the phrase)."""
    phrase = build_profile(include=['"pruning networks"'])
    with_learned = phrase.with_extra(
        learned=Learned(terms=(LearnedTerm("pruning", -2.0),), as_of=NOW).to_json()
    )
    others = [
        RankRequest(build_profile(include=["pruning"]).with_extra(learned=x), 50)
        for x in (Learned(terms=(LearnedTerm("networks", 0.5),), as_of=NOW).to_json(), None)
    ]
    plain = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(phrase, 50)])[0]
    batch = Ranker(CARDS, NO_PRIOR, NOW).rank([others[0], RankRequest(with_learned, 50), *others])
    assert batch[1] == plain
    assert [i.paper_id for i in plain[:4]] == [1, 2, 3, 4]  # the pruning papers first
    assert plain[0].reasons == (Reason("phrase", "pruning networks"),)


def test_learned_authors_count_their_modest_weight() -> None:
    """A followed author outranks a word the reader chose; a learned one (1.5) does not."""
    followed = build_profile(include=["networks"], authors=["Gal Axy"])
    learned = build_profile(include=["networks"]).with_extra(
        learned=Learned(authors=(LearnedAuthor("G. Axy", 1.5),), as_of=NOW).to_json()
    )
    strong = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(followed, 50)])[0]
    modest = Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(learned, 50)])[0]
    galaxies = {31, 32, 33, 34}
    assert {i.paper_id for i in strong[:4]} == galaxies
    assert galaxies <= {i.paper_id for i in modest}
    assert not galaxies & {i.paper_id for i in modest[:4]}
    assert all(i.reasons[0].kind == "author" for i in modest if i.paper_id in galaxies)


def test_learned_weights_fade_at_rank_time() -> None:
    profile = Profile().with_extra(
        learned=Learned(
            terms=(LearnedTerm("pruning", 0.5), LearnedTerm("channels", 0.3)),
            as_of=NOW - timedelta(days=600),
            half_life_days=60,
        ).to_json()
    )
    assert rank(profile) == []  # ten half-lives later it no longer counts


def test_batch_and_single_ranking_agree_with_learned_state() -> None:
    profiles = [
        learned_profile(("pruning", 0.5), ("galaxies", -0.4)),
        build_profile(include=["networks"]).with_extra(
            learned=learn(many_choices(), CARDS, SETTINGS, NOW).to_json()
        ),
        build_profile(include=["speech", "protein"]),
    ]
    ranker = Ranker(CARDS, NO_PRIOR, NOW)
    together = ranker.rank([RankRequest(p, 20) for p in profiles])
    alone = [Ranker(CARDS, NO_PRIOR, NOW).rank([RankRequest(p, 20)])[0] for p in profiles]
    assert together == alone


# -- meaning: liked papers join the profile's texts ---------------------------------------


def test_liked_papers_join_the_profile_texts_with_their_stored_vectors() -> None:
    learned = learn(events((1, 1)), CARDS, SETTINGS, NOW)
    profile = build_profile(include=["compression"]).with_extra(learned=learned.to_json())
    found = profile_texts(profile)
    assert [t.paper for t in found] == [None, "test/1"]
    assert found[1].offset == LIKED_OFFSET and found[1].label.startswith("Structured pruning")

    dimension = 4
    paper_vectors = {c.paper_id: np.eye(dimension)[c.paper_id % dimension] for c in CARDS}
    embedded: list[list[str]] = []

    def embed(batch: list[str]) -> np.ndarray:
        embedded.append(list(batch))
        return np.tile(np.eye(dimension)[2], (len(batch), 1))

    match = SemanticMatch(
        paper_vectors=paper_vectors,
        embed=embed,
        stored_vectors=lambda ids: {i: np.eye(dimension)[1] for i in ids},
    )
    items = Ranker(CARDS, NO_PRIOR, NOW, semantic=match).rank([RankRequest(profile, 50)])[0]
    assert embedded == [["compression"]]  # the liked paper was not embedded again
    close = {i.paper_id: r.label for i in items for r in i.reasons if r.kind == "semantic"}
    # Papers with the liked paper's vector (ids 1, 21, 41 ...: cosine 1 - offset) are close
    # to it; those with the term's vector (2, 22, ...) to "compression".
    assert {pid % dimension for pid in close} == {1, 2}
    for pid, label in close.items():
        assert (
            label.startswith("Structured pruning")
            if pid % dimension == 1
            else label == "compression"
        )


def test_the_mail_names_learned_words_and_semantic_matches() -> None:
    from digest.domain.items import Reason
    from digest.render.text import format_reasons

    reasons = (
        Reason("term", "networks"),
        Reason("learned", "pruning"),
        Reason("learned", "sparsity"),
        Reason("semantic", "model compression"),
    )
    assert format_reasons(reasons) == (
        'Matched networks · close to "model compression" · from your feedback: pruning, sparsity'
    )
