"""Record (or re-check) the golden outputs of every case in tests/golden/cases.py.

    # record from the pre-refactor checkout (its segkit is imported, in children too):
    PYTHONPATH=/path/to/old/checkout python tests/golden/record.py --out tests/golden/record.json
    # run the cases again and compare with a record (a determinism check, or the test by hand):
    python tests/golden/record.py --compare tests/golden/record.json [-k medsam_box3d_onnx ...]
    # re-record only some cases (the others are kept):
    PYTHONPATH=/path/to/old/checkout python tests/golden/record.py --out tests/golden/record.json -k errors

Run it with the Python of the environment whose `segkit` command should run (the command
beside sys.executable is used).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden import cases  # noqa: E402


def _git_head(folder: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, encoding="utf-8", timeout=30)
    except OSError:
        return None
    return done.stdout.strip() or None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the record here")
    parser.add_argument("--compare", type=Path, help="compare the run with this record; exit 1 on any difference")
    parser.add_argument("-k", dest="only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--root", type=Path, help="work folder (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    names = args.only or list(cases.CASES)
    unknown = [n for n in names if n not in cases.CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(cases.CASES)}")
    root = args.root or Path(tempfile.mkdtemp(prefix="segkit-golden-"))
    session = cases.Session(root)
    source = cases._source_root()
    record = {
        "about": "golden outputs of tests/golden/cases.py; tests/test_golden_outputs.py compares with them",
        "segkit_source_commit": _git_head(source),
        "environment": cases.environment_facts(),
        "cases": {},
    }
    print(f"segkit from {source} (commit {record['segkit_source_commit']}); work folder {root}", file=sys.stderr)
    expected = cases.load_record(args.compare)["cases"] if args.compare else None
    failed = []
    for name in names:
        started = time.perf_counter()
        summary, debug = session.run_case(name)
        record["cases"][name] = summary
        rcs = [run["rc"] for run in summary["runs"]]
        print(f"{name}: {time.perf_counter() - started:.1f} s, exit codes {rcs}", file=sys.stderr)
        if expected is not None:
            if name not in expected:
                failed.append(name)
                print(f"  not in {args.compare}", file=sys.stderr)
            elif expected[name] != summary:
                failed.append(name)
                print(cases.diff(expected[name], summary), file=sys.stderr)
    if args.out:
        if args.only and args.out.is_file():  # re-record some cases: keep the others
            kept = cases.load_record(args.out)
            kept["cases"].update(record["cases"])
            record["cases"] = {name: kept["cases"][name] for name in cases.CASES if name in kept["cases"]}
        cases.dump_record(record, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if failed:
        print(f"differences in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
