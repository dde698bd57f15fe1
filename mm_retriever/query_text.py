"""Old import path: ``mm_retriever.query_text`` is :mod:`mm_retriever.query.query_text`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.query import query_text as _moved

sys.modules[__name__] = _moved
