"""Rename the pipelines of an eval results JSON: rename.py IN OUT OLD=NEW ..."""
import json, sys
src, dst, *pairs = sys.argv[1:]
names = dict(p.split("=", 1) for p in pairs)
d = json.load(open(src))
d["pipelines"] = {names.get(k, k): v for k, v in d["pipelines"].items() if k in names}
json.dump(d, open(dst, "w"))
