"""Rank the day's papers for every subscriber of a batch at once. Pure: no I/O, no database.

``Ranker(papers, settings, now)`` does the per-day work once (stems of titles and abstracts,
BM25F weights, author keys, category sets, the trending/freshness prior);
``Ranker.rank(requests)`` then scores a whole batch of profiles with sparse matrix products
and returns one list of ``RankedItem`` per request, best first. ``rank_one`` ranks one.

For one subscriber and one candidate paper (docs/ranking.md has the why and the numbers):

1. **The reader's words** (``digest.ranking.query``). Each include term becomes *units*, each
   scored by BM25F: ``idf * tf * (k1 + 1) / (tf + k1)`` with ``tf = title_weight * tf_title +
   abstract_weight * tf_abstract / (1 - b + b * length / average length)`` and the BM25 idf
   ``ln(1 + (N - df + 0.5) / (df + 0.5))`` over the day's papers. A word is one unit; a
   phrase is its content words, plus the phrase as written (``phrase_weight``) and its words
   near each other (``proximity_weight``); a description (a term of more than six words, or
   the profile's free-text description) is its content words and adjacent pairs, each at
   ``description_weight``. Words match by ``digest.domain.analysis`` stems, the definition the
   mail's highlighting uses. Followed authors add ``author_boost``, a chosen category or archive
   ``category_boost``; what feedback taught adds learned words (signed) and authors.
2. **Relative to the reader's best.** That keyword score is divided by the reader's best open
   paper today: 1 there, whatever the size of the day or the number of terms.
3. **Expansion** (pseudo-relevance feedback, RM3-like). The reader's ``expansion_papers`` best
   papers that reach ``relative_cut`` of the best, weighted by their score, stand in for
   words the reader did not write: each paper's 20 most distinctive words (tf-idf) form a bag
   whose BM25F scores find its neighbours (``Prepared._lexical_neighbours``, once a day).
   ``relevance = (1 - expansion_weight) * own + expansion_weight * expansion`` (each relative
   to its best). A pick that the expansion did more for than the reader's own words says
   ``Reason("related", <the shared distinctive words>)``.
4. **Meaning** (optional, ``semantic=SemanticMatch(...)``, see ``digest.ranking.semantic``):
   the best papers are chosen on ``own + weight * closeness`` instead (closeness to the
   reader's texts, relative to the closest paper, 0 under ``min_cosine``), and
   ``expansion_weight * closeness to those best papers`` (their weighted centroid; relative to
   the closest other paper, 0 under ``expansion_min_cosine``) is added to the relevance. A
   pick at ``threshold`` or closer to a reader's text says ``Reason("semantic", <text>)``;
   one that meaning did most for names the closest best paper.
5. **The cut.** A paper is listed only if its relevance reaches ``relative_cut`` of the
   reader's best today (and is above 0): a narrow profile gets a short list, a broad one a
   long one, never filler below the cut. ``score = relevance + trending_weight *
   log1p(upvotes) + freshness_weight * 0.5 ** (age_hours / half_life)``: the prior re-orders
   what passed, never lets a paper in. ``RankedItem.relevance`` is the keyword part (1-3).

An exclude term (word or phrase, stemmed the same way) in the title or abstract vetoes the
paper for that subscriber, whatever else matched, in the picks and the trending section.

A profile with no topics (``not profile.has_topics``) gets the day's trending papers: by
upvotes (papers without an upvote count last), then the newest, then paper id, each with
``Reason("trending", "<upvotes>")``, or ``Reason("trending", "new")`` when nobody has upvoted
it. ``profile.also_trending`` adds, after the picks, up to ``settings.also_trending`` items with
``section="trending"``: the most upvoted candidates (upvotes > 0) not already picked.

Reasons: one per include term, named by the phrase when the phrase (or its words near each
other) matched, else by its word that did most; a description's words each; authors,
categories and learned words; in order of what they added. ``highlight`` lists every word or
phrase that matched, as the reader wrote it, for the mail to mark.

Batch-equal: unit values and term weights are on binary grids (``parts._VALUE_GRID``,
``_WEIGHT_GRID``), so every keyword sum is exact in any order; everything after that is per
row; vectors are on an integer grid so cosines are exact sums. A batch ranks each reader
bit-for-bit as alone. Other rules: ties break by paper id, lower first; a paper whose
``first_seen_at`` is unknown is never "new since" a ``since`` and gets no freshness; naive
datetimes are taken as UTC; a paper id given twice keeps its first card; a term given twice in
one profile (same stems) counts once, under its first spelling; a term weight that is not a
positive number leaves the term out (only a hand-made ``Profile`` can have one); a learned
weight faded under 0.01 no longer counts.

Speed: requests are ranked in chunks of rows (memory stays flat whatever the batch size), on
up to ``_MAX_THREADS`` threads; a term's units and a unit's paper vector are worked out once
per day; a reader's row is the ids of their terms, turned into a chunk's unit weights with
array operations; reasons are found only for the chosen items.
"""

from digest.ranking.parts import MAX_LIMIT, RankRequest
from digest.ranking.ranker import Ranker, rank_one

__all__ = ["MAX_LIMIT", "RankRequest", "Ranker", "rank_one"]
