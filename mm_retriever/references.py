"""Old import path: ``mm_retriever.references`` is :mod:`mm_retriever.query.references`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.query import references as _moved

sys.modules[__name__] = _moved
