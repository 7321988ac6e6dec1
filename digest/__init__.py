"""Trending-papers digest: a daily email of new research papers, ranked per subscriber."""

__version__ = "0.1.0"
