#!/usr/bin/env python3
"""The example task: read a list of numbers and a settings file, write their range and a log."""

import sys

args = sys.argv[1:]
src = args[args.index("-i") + 1]
dst = args[args.index("-o") + 1]
with open("settings.conf") as fh:
    scale = float(fh.read().split("=")[1])
with open(src) as fh:
    values = [float(x) * scale for x in fh.read().split()]
with open(dst, "w") as fh:
    fh.write(f"{min(values)} {max(values)}\n")
with open("findrange.log", "w") as fh:
    fh.write(f"{len(values)} values read from {src}\n")
print(f"range of {len(values)} values written to {dst}")
