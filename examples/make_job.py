"""Write a runnable job.json for an example: fills in its absolute paths and checksums.

usage: python examples/make_job.py EXAMPLE_DIR OUT_DIR  (prints the path of the job.json)
"""

from __future__ import annotations

import hashlib
import os
import sys


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def main() -> int:
    example, out = (os.path.abspath(p) for p in sys.argv[1:3])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(example, "job.json.in")) as fh:
        text = fh.read()
    text = (text.replace("@EXAMPLE@", example).replace("@OUT@", out)
            .replace("@SHA_SCRIPT@", sha256(os.path.join(example, "findrange.py")))
            .replace("@SHA_INPUT@", sha256(os.path.join(example, "f.b1"))))
    job = os.path.join(out, "job.json")
    with open(job, "w") as fh:
        fh.write(text)
    print(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
