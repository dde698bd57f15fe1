"""Old import path: ``mm_retriever.fusion`` is :mod:`mm_retriever.ranking.fusion`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.ranking import fusion as _moved

sys.modules[__name__] = _moved
