"""Query text: cleaning (query_text), financial expansion (query_expansion), references."""
