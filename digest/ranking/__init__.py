"""Rank the day's papers for every subscriber of a batch at once. Pure: no I/O, no database.

``Ranker(papers, settings, now)`` does the per-day work once (tokenise and stem titles and
abstracts, word counts, author keys, category sets, the trending/freshness prior);
``Ranker.rank(requests)`` then scores a whole batch of profiles with sparse matrix products
and returns one list of ``RankedItem`` per request, best first. ``rank_one`` ranks one.

Scoring, for one subscriber and one candidate paper::

    relevance = sum over the profile's include terms found in the paper:
                    term.weight * rarity * (title_weight * sat(tf_title)
                                            + abstract_weight * sat(tf_abstract))
              + author_boost   * (followed authors among the paper's authors, each counts)
              + category_boost * (1 if a chosen category or archive covers any of its categories)
    score     = relevance + trending_weight * log1p(upvotes)
                          + freshness_weight * 0.5 ** (age_hours / freshness_half_life_hours)

- ``sat`` is BM25's term-frequency saturation, ``tf * (k1 + 1) / (tf + k1 * norm)``: 1.0 for
  one occurrence at average length, at most ``k1 + 1`` however often. In the abstract
  ``norm = 1 - b + b * length / average_abstract_length``. Titles are not length-normalised
  (``norm = 1``): they are all short, and a word in a title is there on purpose.
- ``rarity`` stands in for BM25's idf. Plain idf is unbounded and grows with the size of the
  day, so a fixed floor would mean one thing on a 250-paper day and another on a 2,000-paper
  one. Here ``rarity = 0.5 + 0.5 / (1 + share / 0.1)``, where ``share`` is the part of the
  day's papers that contain the term (counted over ``papers + 50``, so on a tiny day a word is
  not "common" just because two of three papers use it): a rare term counts ~1, one in 10 % of
  the papers 0.75, one in every paper just over 0.5; never 0.5 or less.
- Words match by ``digest.analysis`` stems, the same definition the mail's highlighting uses:
  "transformers" finds "Transformer", "LLMs" finds "LLM". A phrase (``Term.is_phrase``)
  matches only as its contiguous stem sequence within one field; ``tf`` counts its
  (non-overlapping) occurrences.
- An exclude term (word or phrase, stemmed the same way) in the title or abstract vetoes the
  paper for that subscriber, whatever else matched, in the picks and the trending section.

The floor (``relevance_floor``, default 1.0) applies to ``relevance`` alone, before the prior:
upvotes and freshness re-order papers that passed it but never let one in, and a relevance of
0 never passes, even with a floor of 0. With the default weights (title 2, abstract 1):

- any title match of a term of weight 1 clears it (``2 * 1.0 * rarity > 1``);
- one mention in an abstract of average length or longer does not (``1.0 * rarity < 1``);
  at that length two mentions of a rarer term, several of a common one, or two terms do;
- a followed author (boost 3) clears it on their own; so does a chosen category (boost 1).

So a narrow profile gets a short list, not filler.

A profile with no topics (``not profile.has_topics``) gets the day's trending papers: by
upvotes (papers without an upvote count last), then the newest, then paper id, each with
``Reason("trending", "<upvotes>")``, or ``Reason("trending", "new")`` when nobody has upvoted
it: it is listed because it is new since the last digest, not because it trends.
``profile.also_trending`` adds, after the picks, up to ``settings.also_trending`` items with
``section="trending"``: the most upvoted candidates (upvotes > 0) not already picked.

Meaning beyond keywords (optional): given ``semantic=SemanticMatch(...)`` (``digest.semantic``:
the day's paper vectors and a way to embed profile texts), each profile is also matched by
meaning. Its texts (each include term, and the description in ``profile.extra``) are embedded
once per day; a paper's ``closeness`` is its best cosine over them. Then::

    score  += weight * clip((closeness - min_cosine) / (1 - min_cosine), 0, 1)
    passes  = relevance >= relevance_floor  or  closeness >= threshold

so closeness re-orders what the keywords found, and lets a paper in on meaning alone only
when it is high ("pruning" for a reader of "model compression"). A pick whose closeness
reaches the threshold carries ``Reason("semantic", <the closest profile text>)``, in order of
contribution among its other reasons. ``RankedItem.relevance`` stays the keyword part. A
profile with only a description has topics when semantic matching is on (trending otherwise).
Vectors are put on an integer grid (``_GRID``) so the cosines are exact sums, the same in any
batch. Without ``semantic`` (or when embedding fails) ranking is exactly keyword ranking.

What feedback taught (``profile.learned``, made by ``digest.feedback``) joins the same sums,
faded by ``Learned.decay(now)``: learned words (and the per-reader model's words) as more
term rows whose weights may be negative, each with ``Reason("learned", <word>)``; the
weights of one stem add up, and a stem among the profile's own include terms keeps the
reader's weight (the learned one is ignored). A negative weight lowers relevance, so it can
push a paper under the floor, and never lets one in; positive ones count like include terms.
Learned authors count their own (modest) weight instead of ``author_boost``; a followed
author keeps ``author_boost``. A liked paper is one more semantic text, matched by its stored
vector (``SemanticMatch.stored_vectors``) with its cosines lowered by its ``offset``.

Other rules: ties break by paper id, lower first; a paper whose ``first_seen_at`` is unknown is
never "new since" a ``since`` and gets no freshness; naive datetimes are taken as UTC; a paper
id given twice keeps its first card; a term given twice in one profile (same stems) counts
once, under its first spelling; a term weight that is not a positive number leaves the term
out (only a hand-made ``Profile`` can have one).

Speed: requests are ranked in chunks of rows (memory stays flat whatever the batch size), on
up to ``_MAX_THREADS`` threads; a term's paper vector is computed once per day and reasons
only for the chosen items.
"""

from digest.ranking.parts import MAX_LIMIT, RankRequest
from digest.ranking.ranker import Ranker, rank_one

__all__ = ["MAX_LIMIT", "RankRequest", "Ranker", "rank_one"]
