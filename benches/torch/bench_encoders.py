#!/usr/bin/env python3
"""PyTorch twin of the vlkit encoder benchmarks: transformers CLIPModel throughput.

Random-init weights (no downloads) at the real ViT-B/32 and ViT-B/16 shapes:
  vit-b32/image/b{N}   get_image_features, 224x224, patch 32  (vision 768 wide, 12 layers, 12 heads)
  vit-b16/image/b{N}   get_image_features, 224x224, patch 16
  vit-b32/text/b{N}    get_text_features, 77 tokens (text 512 wide, 12 layers, 8 heads; B/16 has the
                       same text tower, so it is measured once)

Environment: see tools/fixtures/README.md (CPU torch from PyPI). Examples:

    .venv/bin/python benches/torch/bench_encoders.py --device cpu --threads 2 \
        --iters 3 --warmup 1 --batches 8 --json-out runs/torch_cpu.json
    python benches/torch/bench_encoders.py --device cuda --dtype bf16 --batches 1,32,256 \
        --text-batches 64,1024

Prints a Markdown table and optionally writes JSON:
  {"rows": [{"bench": "vit-b32/image/b8", "items_per_s": ..., "ms_per_iter": ..., "peak_rss_mb": ...}, ...],
   "torch": version, "threads": n, "device": ..., ...}
Memory is measured over the timed calls only (reset after the warm-up, as in the vlkit bench):
peak_rss_mb is the process's peak RSS (VmHWM), and on cuda peak_gpu_mb / peak_gpu_reserved_mb are
torch.cuda.max_memory_allocated / max_memory_reserved. benches/torch/compare.py tables the JSON
against vlkit's target/bench/vl-<device>.json (`cargo xtask bench --torch` runs all three).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def vision_cfg(patch):
    return dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=patch, hidden_act="quick_gelu")


TEXT_CFG = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu")


def build(patch, device, dtype, attn):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=TEXT_CFG, vision_config=vision_cfg(patch), projection_dim=512)
    torch.manual_seed(0)
    model = CLIPModel._from_config(cfg, attn_implementation=attn).eval()
    return model.to(device=device, dtype=dtype)


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux 4.0+), so that
    peak_rss_mb() covers only what follows; the vlkit bench does the same after its warm-up."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    """VmHWM from /proc/self/status (resettable), else ru_maxrss (peak since start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def time_fn(fn, device, iters, warmup):
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        # peak memory is measured over the timed calls only (as in the vlkit bench)
        reset_peak_rss()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                    help="bf16/fp16 only on cuda (default fp32)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per bench (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up iterations (default 2)")
    ap.add_argument("--batches", default="8,32", help="comma-separated batch sizes (default 8,32)")
    ap.add_argument("--text-batches", default=None,
                    help="batch sizes of the text benches (default: --batches); the GPU runs use 64,1024")
    ap.add_argument("--models", default="vit-b32,vit-b16", help="subset of vit-b32,vit-b16")
    ap.add_argument("--what", default="image,text", help="subset of image,text")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="transformers attention impl")
    ap.add_argument("--json-out", default=None, help="write results as JSON to this file")
    args = ap.parse_args()

    if args.dtype != "fp32" and args.device != "cuda":
        ap.error("--dtype bf16/fp16 is only supported with --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("CUDA is not available in this torch build / machine")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    text_batches = [int(b) for b in (args.text_batches or args.batches).split(",") if b.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    import transformers

    rows = []
    for mname in models:
        patch = {"vit-b32": 32, "vit-b16": 16}[mname]
        # the text tower is identical for B/32 and B/16: measure it once, under vit-b32
        kinds = [w for w in what if w == "image" or (w == "text" and mname == "vit-b32")]
        if not kinds:
            continue
        model = build(patch, device, dtype, args.attn)
        for kind in kinds:
            for b in (batches if kind == "image" else text_batches):
                g = torch.Generator().manual_seed(b)
                if kind == "image":
                    x = torch.randn(b, 3, 224, 224, generator=g).to(device=device, dtype=dtype)

                    def fn(x=x):
                        return model.get_image_features(pixel_values=x).pooler_output
                else:
                    ids = torch.randint(1, 49406, (b, 77), generator=g)
                    ids[:, 0] = 49406
                    ids[:, -1] = 49407
                    ids = ids.to(device)

                    def fn(ids=ids):
                        return model.get_text_features(input_ids=ids).pooler_output

                times = time_fn(fn, device, args.iters, args.warmup)
                mean_s = statistics.fmean(times)
                row = {
                    "bench": f"{mname}/{kind}/b{b}",
                    "model": mname,
                    "what": kind,
                    "batch": b,
                    "items_per_s": b / mean_s,
                    "ms_per_iter": mean_s * 1e3,
                    "ms_min": min(times) * 1e3,
                    "ms_median": statistics.median(times) * 1e3,
                    "iters": args.iters,
                    "peak_rss_mb": peak_rss_mb(),
                }
                if device.type == "cuda":
                    row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
                    row["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2 ** 20
                rows.append(row)
                print(f"# {row['bench']}: {row['ms_per_iter']:.1f} ms/iter, {row['items_per_s']:.2f} items/s",
                      file=sys.stderr, flush=True)
        del model

    print()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}, "
          f"dtype {args.dtype}, threads {args.threads}, attn {args.attn}, iters {args.iters}, warmup {args.warmup}")
    print()
    print("| model | what | batch | ms/iter | items/s |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['what']} | {r['batch']} | {r['ms_per_iter']:.1f} | {r['items_per_s']:.2f} |")

    if args.json_out:
        doc = {
            "rows": rows,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": args.threads,
            "device": args.device,
            "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "dtype": args.dtype,
            "attn": args.attn,
            "iters": args.iters,
            "warmup": args.warmup,
        }
        d = os.path.dirname(os.path.abspath(args.json_out))
        os.makedirs(d, exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
