"""Whether an XLA flag lets JAX's XLA:CPU reach oneDNN's bfloat16 kernels: JAX's peak per XLA_FLAGS setting.

    python benchmarks/xla_cpu_flags.py                       # every setting below, one JAX process each
    python benchmarks/xla_cpu_flags.py --json benchmarks/results/xla_cpu_flags_cpu2.json

Each setting runs `_timing.peak_gflops` (2048^2 matmul, 3x3 256->256 conv at 128x128 batch 4 NHWC, float32
and bfloat16) in a fresh JAX interpreter with `XLA_FLAGS` set; a flag this jaxlib does not know aborts its
process, and the row says so. The flags are the oneDNN / XNNPACK switches found in jaxlib's own flag list
(`strings libjax_common.so | grep xla_cpu_`).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "default": "",
    "use_onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "use_xnnpack": "--xla_cpu_use_xnnpack=true",
    "no_thunk_runtime": "--xla_cpu_use_thunk_runtime=false",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        import jax
        from _timing import load_average
        from _timing import peak_gflops

        result = {"jax": jax.__version__, "load": load_average(), "peaks": peak_gflops(repeats=args.repeats)}
        print("RESULT " + json.dumps(result))
        return 0

    from _timing import print_table
    from _timing import run_in_backend

    rows = []
    for name in [s for s in args.settings.split(",") if s]:
        flags = SETTINGS[name]
        row = {"setting": name, "XLA_FLAGS": flags or "-"}
        try:
            result = run_in_backend(
                "jax",
                os.path.abspath(__file__),
                ["--_worker", "--repeats", str(args.repeats)],
                env={"XLA_FLAGS": flags},
            )
        except RuntimeError as error:
            row["error"] = str(error).strip().splitlines()[-1][:160]
            rows.append(row)
            continue
        for dtype, short in (("float32", "fp32"), ("bfloat16", "bf16")):
            for kind in ("matmul", "conv"):
                row[f"{short}_{kind}"] = (result["peaks"].get(dtype) or {}).get(kind)
        row["load"] = result["load"]
        row["jax"] = result["jax"]
        rows.append(row)
    columns = ["setting", "fp32_matmul", "fp32_conv", "bf16_matmul", "bf16_conv", "load", "XLA_FLAGS", "error"]
    print_table(rows, columns)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
