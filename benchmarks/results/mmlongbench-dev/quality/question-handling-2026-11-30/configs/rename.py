"""Rename the pipelines of an eval results JSON, keeping only those named: IN OUT OLD=NEW ..."""

import json
import sys
from pathlib import Path

src, dst, *pairs = sys.argv[1:]
names = dict(p.split("=", 1) for p in pairs)
data = json.loads(Path(src).read_text())
data["pipelines"] = {names[k]: v for k, v in data["pipelines"].items() if k in names}
Path(dst).write_text(json.dumps(data))
