"""Query text handling before retrieval: drop instructions addressed to the answering LLM.

Questions written for a chatbot often end with instructions about the answer's form ("Write the
answer in float format.", "Round your answer to two decimal places.", "Directly answer 'yes' or
'no'."). Those words say nothing about which page holds the answer, and to BM25 and dense
encoders they are noise ("format", "answer", "list" match unrelated pages). ``retrieval_text``
removes such sentences, never the first one, so the question itself always stays.
"""

from __future__ import annotations

import re

# a sentence ends at ? or ! (then optional space), or at . then space, before an upper-case
# letter or an opening quote or bracket ("U.S." and "3.5" do not end sentences)
_SENTENCE_END = re.compile(r"(?:(?<=[?!])\s*|(?<=\.)\s+)(?=[A-Z\"'(\[])")

_VERB = r"(?:write|give|provide|return|output|express|present|put|state)"
_INSTRUCTION = re.compile(
    rf"""^\s*(?:please\s+|kindly\s+)?(?:
        {_VERB}\b.*\b(?:answers?|format)\b                 # write the answer in float format
      | {_VERB}\s+(?:me\s+)?(?:an?\s+)?(?:integer|int|float|decimal|number|string|list)
            \s*[.!]?\s*$                                    # give me an integer
      | format\b                                            # format the years as a list
      | (?:directly\s+|briefly\s+|only\s+)?answer\b        # answer in millions
      | round\b                                             # round to two decimals
      | (?:your|the)\s+answer\b                            # your answer should be a list
      | enumerate\b.*\blist\b                              # enumerate them in a list
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (a light splitter: enough for questions)."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def is_answer_instruction(sentence: str) -> bool:
    """Whether ``sentence`` tells the answerer how to format the answer."""
    return bool(_INSTRUCTION.match(sentence))


def retrieval_text(text: str) -> str:
    """``text`` without its answer-format instructions (the first sentence is always kept)."""
    parts = sentences(text)
    kept = [parts[0], *(p for p in parts[1:] if not is_answer_instruction(p))] if parts else []
    return " ".join(kept) if len(kept) < len(parts) else text.strip()
