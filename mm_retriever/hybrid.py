"""Old import path: ``mm_retriever.hybrid`` is :mod:`mm_retriever.ranking.hybrid`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.ranking import hybrid as _moved

sys.modules[__name__] = _moved
