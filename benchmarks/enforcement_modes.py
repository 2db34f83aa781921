"""Threshold vs proximal enforcement on the same ISS run (side by side, one JSON).

Runs examples/ptb_quickstart.py once per mode with identical seeds and data
and writes active units, weights and validation perplexity of each.

    python benchmarks/enforcement_modes.py --data_dir=../shared/data/ptb [--quick]
"""

import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
QUICKSTART = os.path.join(HERE, "..", "examples", "ptb_quickstart.py")
sys.path.insert(0, os.path.join(HERE, ".."))

from iss_keras.files import write_text  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--out", default="runs/enforcement_modes")
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test, numbers meaningless)")
    p.add_argument("extra", nargs="*", help="more flags for ptb_quickstart.py, e.g. --strength=8e-3")
    args = p.parse_args()
    extra = list(args.extra)
    if args.quick:
        extra += ["--train_tokens=4000", "--epochs=1", "--hidden=8", "--vocab_size=50"]
    results = {}
    for mode in ("threshold", "proximal"):
        out = os.path.join(args.out, mode)
        cmd = [sys.executable, QUICKSTART, f"--data_dir={args.data_dir}", f"--mode={mode}",
               f"--out={out}"] + extra
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        with open(os.path.join(out, "results.json")) as f:
            results[mode] = json.load(f)
    summary = {mode: {k: r[k] for k in ("hidden_after", "weights_after", "macs_per_token_after",
                                          "valid_perplexity_shrunk", "train_seconds")}
               for mode, r in results.items()}
    summary["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    summary["flags"] = extra
    os.makedirs(args.out, exist_ok=True)
    write_text(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
