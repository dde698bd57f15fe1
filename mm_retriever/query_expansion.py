"""Old import path: ``mm_retriever.query_expansion`` is :mod:`mm_retriever.query.query_expansion`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.query import query_expansion as _moved

sys.modules[__name__] = _moved
