"""Old import path: ``mm_retriever.maxsim_native`` is :mod:`mm_retriever.multivector.maxsim_native`.

Moved in the layered layout; importing the old path gives that module itself (the same
objects). Nothing inside the package imports it.
"""

import sys

from mm_retriever.multivector import maxsim_native as _moved

sys.modules[__name__] = _moved
