#!/usr/bin/env python3
"""Compare two output trees byte for byte (usage: compare_outputs.py OLD NEW FILE...); for summary.json/report.html also after masking
timings, the generation time and the profile's path (what legitimately differs)."""
import json, re, sys, hashlib
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
FILES = sys.argv[3:]
def norm_json(p):
    d = json.loads(p.read_text())
    d.pop("timings", None); d.pop("profile_source", None)
    return json.dumps(d, sort_keys=True)
def norm_html(p):
    t = p.read_text()
    for tree in (a, b):  # the two output folders' own absolute paths
        t = t.replace(str(tree.resolve()) + "/", "OUT/")
    roots = {m for part in t.split("<") if "/registry/profiles/" in part and len(part) < 4000
             for m in re.findall(r"[^\s\"'>]*/registry/profiles/", part)}
    for root in roots:  # where each tree's profiles live
        t = t.replace(root, "PROFILES/")
    t = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated T", t)
    # timing rows of the header table: <th>xxx_s</th><td>n</td>
    t = re.sub(r"(<th>[a-z_]+_s</th>\s*</tr>|<th>[a-z_]+_s</th>\s*<td>)[0-9.]+(</td>)", r"\1T\2", t)
    return t
for f in FILES:
    pa, pb = a / f, b / f
    same = pa.read_bytes() == pb.read_bytes()
    how = "byte-identical"
    if not same:
        if f.endswith(".json"):
            same, how = norm_json(pa) == norm_json(pb), "identical except timings/profile path"
        elif f.endswith(".html"):
            same, how = norm_html(pa) == norm_html(pb), "identical except timings/generation time"
    print(f"{'SAME' if same else 'DIFF'}  {f}  ({how if same else 'differs'})  sha256 {hashlib.sha256(pb.read_bytes()).hexdigest()[:12]}")
