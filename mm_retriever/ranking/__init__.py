"""Ranking: fusion of the legs' hits, the document prior, the hybrid retriever, hydration."""
