"""LangChain's standard retriever tests (langchain-tests) against a real index."""

from __future__ import annotations

import pytest
from langchain_mm_retriever import MMRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests


class TestMMRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_index(self, mm_index) -> None:
        self.mm_index = mm_index

    @property
    def retriever_constructor(self) -> type[MMRetriever]:
        return MMRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self.mm_index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "How many meteor sightings did the observatory record?"
