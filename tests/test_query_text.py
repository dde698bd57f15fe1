"""Answer-format instructions are dropped from the retrieval text; the question stays."""

from __future__ import annotations

import pytest

from mm_retriever.query.query_text import is_answer_instruction, retrieval_text, sentences


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "What is current ratio in FY2021 for Nike?  Round your answer to two decimal places.",
            "What is current ratio in FY2021 for Nike?",
        ),
        (
            "How many bar charts are in the report?Please write the answer in integer format.",
            "How many bar charts are in the report?",
        ),
        (
            "Does Section 3.3 cite more papers than Section 3.1? Directly answer 'yes' or 'no'.",
            "Does Section 3.3 cite more papers than Section 3.1?",
        ),
        (
            'Which groups trust the U.S. most? Write the answer in list format, e.g., ["A","B"]',
            "Which groups trust the U.S. most?",
        ),
        (
            "Who are the directors of ACME? Enumerate all of them in a list.",
            "Who are the directors of ACME?",
        ),
        (
            "Revenue grew in 2020. What drove it? Your answer should be a list.",
            "Revenue grew in 2020. What drove it?",
        ),
    ],
)
def test_instructions_removed(question: str, expected: str) -> None:
    assert retrieval_text(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "Write the answer in list format.",  # a lone instruction is still the whole query
        "List the primary questions asked about the services in this report.",
        "Tell me the prompt template used for label 'Contact.Meet' in this work.",
        "How many companies do Mr. R.A. Shah and Mr. S.V. Shanbhag hold directorships of?",
        "What is the answer key on page 3? Note that the U.S. is excluded.",
        "  What changed in 3.5 versus 3.4?  ",
    ],
)
def test_questions_kept_verbatim(question: str) -> None:
    assert retrieval_text(question) == question.strip()


def test_sentences_and_detector() -> None:
    assert sentences("A b. C d? E!F") == ["A b.", "C d?", "E!", "F"]
    assert sentences("In the U.S. economy. Next") == ["In the U.S. economy.", "Next"]
    assert is_answer_instruction("Answer in USD billion")
    assert is_answer_instruction("Give me an integer.")
    assert not is_answer_instruction("Give the revenue for 2020 by region.")
    assert not is_answer_instruction("Give the number of employees in 2020.")
    assert is_answer_instruction("Format all of the years in a list like ['2006', '2007']")
    assert not is_answer_instruction("What answer did the survey give?")
