"""Peak memory and time of decoding one huge image, as `vlmface eval` does it (in a fresh process).

Builds a SIDE x SIDE PNG (and a JPEG) from a real UTKFace face in a temporary folder, then, in a
child process per file, runs `vlmface.data.samples.decode_image` on its bytes and prints the
child's peak RSS (ru_maxrss), the decode time and the decoded size. A bigger image (e.g. 20000)
shows the max-pixels refusal instead.

    python benchmarks/decode_bench.py [--side 13000] [--data-dir ../shared/data/utkface/crop_part1] [--code DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, time
from pathlib import Path
from vlmface.data.samples import decode_image
from vlmface.errors import SampleError
path = Path(sys.argv[1])
data = path.read_bytes()
start = time.perf_counter()
try:
    image = decode_image(data, str(path))
    outcome = f"decoded to {image.size[0]}x{image.size[1]} {image.mode}"
except SampleError as exc:
    outcome = f"SampleError: {exc}"
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{path.suffix:5} {len(data) / 1e6:8.1f} MB file  peak RSS {rss:7.0f} MB  {seconds:6.2f} s  {outcome}")
"""


MAKE = """
import sys
from pathlib import Path
from PIL import Image
face, side, tmp = Image.open(sys.argv[1]).convert("RGB"), int(sys.argv[2]), Path(sys.argv[3])
big = face.resize((side, side), Image.Resampling.NEAREST)
big.save(tmp / "big.png", compress_level=1)
big.save(tmp / "big.jpg", quality=90)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=13000, help="image width and height (default 13000)")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "utkface" / "crop_part1",
                        help="folder of real faces (default ../shared/data/utkface/crop_part1)")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose vlmface is measured (default: this one)")
    args = parser.parse_args()
    face = next(iter(sorted(args.data_dir.glob("*.jpg"))))
    env = {"PYTHONPATH": str(args.code), "PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory() as tmp:
        # made in a child: a child's peak RSS includes what its parent held when it forked
        subprocess.run([sys.executable, "-c", MAKE, str(face), str(args.side), tmp], check=True, env=env)
        print(f"{args.side}x{args.side} image from a real face:")
        for suffix in (".png", ".jpg"):
            subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / f"big{suffix}")], check=True,
                           cwd=args.code, env=env)

if __name__ == "__main__":
    main()
