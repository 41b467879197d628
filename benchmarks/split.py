"""Benchmark ``ampcap split`` on a 5-setting x 10-minute aligned session at 48 kHz.

Builds a synthetic aligned session on disk (the test suite's builder: session.json,
program.wav, aligned/alignment.json and five aligned takes), then times the split in a fresh
child process and reads that process's peak resident memory, against the targets of <= 10 s
and <= 1 GB. Prints a Markdown table.

    python benchmarks/split.py [--minutes 10] [--settings 5] [--rate 48000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 10.0
TARGET_BYTES = 1 << 30


def run_split(session: str, out: str, exports: list[str]) -> None:
    """Child process: split once and print wall time and peak RSS as JSON."""
    from ampcap.dataset.split_write import SplitOptions, build_dataset

    start = time.perf_counter()
    result = build_dataset([session], out, SplitOptions(exports=tuple(exports)))
    wall = time.perf_counter() - start
    # ru_maxrss is in kibibytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    frames = sum(f.frames for f in result.manifest.splits.values())
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_bytes": peak,
                "frames": frames,
                "blocks": len(result.manifest.blocks),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="DI minutes per take")
    parser.add_argument("--settings", type=int, default=5, help="knob settings (takes)")
    parser.add_argument("--rate", type=int, default=48_000, help="sample rate in Hz")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_split(args.child[0], args.child[1], args.child[2:])
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from split_helpers import SourceSpec, make_session

    work = args.keep or Path(tempfile.mkdtemp(prefix="ampcap-bench-split-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        half = int(args.minutes * 60 * args.rate) // 2
        values = [10.0 * i / max(1, args.settings - 1) for i in range(args.settings)]
        start = time.perf_counter()
        session = make_session(
            work / "captures" / "bench",
            rate=args.rate,
            sources=(
                SourceSpec("guitar.wav", "guitar", half),
                SourceSpec("bass.wav", "bass", half),
            ),
            settings=tuple({"isf": v} for v in values),
            edge=args.rate,
        )
        built = time.perf_counter() - start
        rows = []
        for label, exports in (
            ("split", []),
            ("split + --export coreaudioml nam", ["coreaudioml", "nam"]),
        ):
            out = work / "data" / ("bench" if not exports else "bench-exports")
            shutil.rmtree(out, ignore_errors=True)
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(session), str(out), *exports],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append((label, json.loads(child.stdout.strip().splitlines()[-1])))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"ampcap split benchmark: {args.settings} settings x {args.minutes:g} min of DI at "
        f"{args.rate} Hz (session built in {built:.1f} s, files in the page cache); "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}\n"
    )
    print(
        "| run | blocks | frames written | wall (s) | target (s) | peak RSS (MiB) | "
        "target (MiB) | verdict |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, r in rows:
        # The targets are for the split; the exports row shows what they add on top.
        targeted = label == "split"
        ok = r["wall_s"] <= TARGET_SECONDS and r["peak_bytes"] <= TARGET_BYTES
        verdict = ("meets" if ok else "MISSES") if targeted else "no target (extra)"
        print(
            f"| {label} | {r['blocks']} | {r['frames']} | {r['wall_s']:.2f} | "
            f"{f'{TARGET_SECONDS:g}' if targeted else '-'} | {r['peak_bytes'] / 2**20:.0f} | "
            f"{f'{TARGET_BYTES / 2**20:.0f}' if targeted else '-'} | {verdict} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n1-minute load average after the runs: {load:.1f} on {os.cpu_count()} CPU(s).")


if __name__ == "__main__":
    main()
