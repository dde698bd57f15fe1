"""Old import path: ``mm_retriever.scoring`` is :mod:`mm_retriever.multivector.scoring`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.multivector import scoring as _moved

sys.modules[__name__] = _moved
