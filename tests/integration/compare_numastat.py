#!/usr/bin/env python3
"""Compare numatierctl stat output with numastat's, row by row.
Usage: compare_numastat.py m|p OURS THEIRS
  p: same header, same columns, every value within 0.01 MB.
  m: same columns; MemTotal within 0.01 MB; MemFree and MemUsed within
     64 MB (the two commands run a moment apart on a live machine)."""
import sys


def parse(path):
    header, rows = [], {}
    for line in open(path):
        parts = line.split()
        # numastat 2.0.16 warns "Token X not in hash table." for meminfo
        # fields newer than itself; that is not part of the table.
        if not parts or set(line.strip()) <= set("- ") or line.startswith("Token "):
            continue
        try:
            vals = [float(x) for x in parts[1:]]
        except ValueError:
            header.append(" ".join(parts))
            continue
        if vals:
            rows[parts[0]] = vals
        else:
            header.append(" ".join(parts))
    return header, rows


mode, ours, theirs = sys.argv[1:4]
oh, orows = parse(ours)
th, trows = parse(theirs)
errors = []
if oh != th:
    errors.append(f"headers differ: {oh} vs {th}")
if mode == "p":
    if list(orows) != list(trows):
        errors.append(f"rows differ: {list(orows)} vs {list(trows)}")
    for name, tv in trows.items():
        ov = orows.get(name, [])
        if len(ov) != len(tv) or any(abs(a - b) > 0.0101 for a, b in zip(ov, tv)):
            errors.append(f"{name}: ours {ov} numastat {tv}")
else:
    for name, tol in (("MemTotal", 0.0101), ("MemFree", 64), ("MemUsed", 64)):
        ov, tv = orows.get(name), trows.get(name)
        if ov is None or tv is None or len(ov) != len(tv) or any(abs(a - b) > tol for a, b in zip(ov, tv)):
            errors.append(f"{name}: ours {ov} numastat {tv}")
    missing = [n for n in trows if n not in orows]
    if missing:
        errors.append(f"rows numastat has and we lack: {missing}")
for e in errors:
    print("mismatch:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
