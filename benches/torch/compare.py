#!/usr/bin/env python3
"""Table vlkit's encoder benches against the PyTorch baseline, as one Markdown table.

Reads target/bench/vl-<device>.json (written by `cargo bench -p vl-bench --bench encoders`) and
target/bench/torch.json (written by benches/torch/bench_encoders.py), prints the table and writes
it to target/bench/compare-<device>.md. `cargo xtask bench --torch` runs all three.

Columns: bench id, throughput of each (items/s: images or texts per second), the ratio
ours / PyTorch (> 1: vlkit is faster), and the peak memory of each during the timed calls: the
process's peak RSS, and on a GPU the device memory in front of it (ours: what Burn's allocator
reserved; PyTorch: torch.cuda.max_memory_reserved). Rows that only one side ran show a dash.

    .venv/bin/python benches/torch/compare.py --device flex
Standard library only.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASH = "—"


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        sys.exit(f"error: no {what} results at {path}")
    except json.JSONDecodeError as err:
        sys.exit(f"error: {path} is not valid JSON ({err})")


def fmt(value, digits):
    return DASH if value is None else f"{value:,.{digits}f}"


def memory(row, gpu_keys):
    """Peak memory cell: `GPU MB (RSS MB)` where a GPU figure exists, else the RSS in MB."""
    if row is None:
        return DASH
    rss = row.get("peak_rss_mb")
    gpu = next((row[k] for k in gpu_keys if row.get(k) is not None), None)
    if gpu is None:
        return fmt(rss, 0)
    return f"{gpu:,.0f} GPU ({fmt(rss, 0)} RSS)"


def table(ours, torch):
    ours_rows = {r["bench"]: r for r in ours.get("rows", [])}
    torch_rows = {r["bench"]: r for r in torch.get("rows", [])}
    benches = list(ours_rows) + [b for b in torch_rows if b not in ours_rows]

    rev = ours.get("git_revision")
    quick = ", quick" if ours.get("quick") else ""
    lines = [
        f"vlkit `{ours.get('device', '?')}` ({ours.get('dtype', '?')}, "
        f"{ours.get('threads', '?')} cores available, git {rev[:10] if rev else 'unknown'}{quick}) vs "
        f"PyTorch {torch.get('torch', '?')} `{torch.get('device', '?')}` ({torch.get('dtype', '?')}, "
        f"{torch.get('threads', '?')} threads, attn {torch.get('attn', '?')}); "
        "items/s = images or texts per second, memory = peak during the timed calls in MiB.",
        "",
        "| bench | ours (items/s) | PyTorch (items/s) | ours / PyTorch | ours peak mem (MiB) "
        "| PyTorch peak mem (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for bench in benches:
        o, t = ours_rows.get(bench), torch_rows.get(bench)
        o_ips = o.get("items_per_s") if o else None
        t_ips = t.get("items_per_s") if t else None
        ratio = o_ips / t_ips if o_ips is not None and t_ips else None
        lines.append(
            f"| {bench} | {fmt(o_ips, 2)} | {fmt(t_ips, 2)} | "
            f"{DASH if ratio is None else f'{ratio:.2f}×'} | "
            f"{memory(o, ['peak_gpu_mb'])} | {memory(t, ['peak_gpu_reserved_mb', 'peak_gpu_mb'])} |"
        )
    if not benches:
        lines.append(f"| (no results) | {DASH} | {DASH} | {DASH} | {DASH} | {DASH} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=os.environ.get("VL_BENCH_DEVICE") or "flex",
                    help="vlkit device whose results to read: flex, wgpu or cuda "
                         "(default: $VL_BENCH_DEVICE, else flex)")
    ap.add_argument("--ours", help="vlkit results (default: target/bench/vl-<device>.json)")
    ap.add_argument("--torch", help="PyTorch results (default: target/bench/torch.json)")
    ap.add_argument("--out", help="Markdown output (default: target/bench/compare-<device>.md)")
    args = ap.parse_args()

    bench_dir = os.path.join(ROOT, "target", "bench")
    ours_path = args.ours or os.path.join(bench_dir, f"vl-{args.device}.json")
    torch_path = args.torch or os.path.join(bench_dir, "torch.json")
    out_path = args.out or os.path.join(bench_dir, f"compare-{args.device}.md")

    ours = load(ours_path, "vlkit")
    torch = load(torch_path, "PyTorch")
    same = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
    if torch.get("dtype") is not None and same.get(ours.get("dtype"), ours.get("dtype")) != torch["dtype"]:
        print(f"warning: comparing vlkit {ours.get('dtype')} with PyTorch {torch['dtype']}", file=sys.stderr)

    text = table(ours, torch)
    print(text, end="")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out_path)
    shown = os.path.abspath(out_path)
    if shown.startswith(ROOT + os.sep):
        shown = os.path.relpath(shown, ROOT)
    print(f"written to {shown}", file=sys.stderr)


if __name__ == "__main__":
    main()
