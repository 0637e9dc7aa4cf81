#!/usr/bin/env python3
"""PyTorch twin of vlkit's per-operation bench (benches/benches/ops.rs): the operations inside one
CLIP transformer layer, in the form transformers' CLIP uses them.

  ops/vit-b32-layer/linear-fc1/b{N}     nn.Linear(768, 3072) on [N, 50, 768]
  ops/vit-b32-layer/attention/b{N}      F.scaled_dot_product_attention on q, k, v [N, 12, 50, 64]
  ops/vit-b32-layer/layer-norm/b{N}     nn.LayerNorm(768) on [N, 50, 768]
  ops/vit-b32-layer/quick-gelu/b{N}     x * sigmoid(1.702 x) on [N, 50, 3072] (transformers' QuickGELU)
  ops/vit-b32-layer/encoder-layer/b{N}  transformers' CLIPEncoderLayer (sdpa) on [N, 50, 768]
  ops/text-layer/attention-causal/b{N}  causal F.scaled_dot_product_attention on [N, 8, 77, 64]

    .venv/bin/python benches/torch/bench_ops.py --threads 2 --json-out target/bench/torch-ops.json
    .venv/bin/python benches/torch/compare.py --ours target/bench/vl-ops-flex.json \
        --torch target/bench/torch-ops.json --out target/bench/compare-ops-flex.md

Random inputs and weights, no downloads, inference (torch.no_grad). Each op runs --warmup untimed
calls, then calls until --seconds have passed (at least --min-iters); peak RSS over the timed calls.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_encoders import peak_rss_mb, reset_peak_rss, vision_cfg  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="bf16/fp16 only on cuda (default fp32)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    import transformers
    from transformers import CLIPVisionConfig
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if args.dtype != "fp32" and args.device != "cuda":
        ap.error("--dtype bf16/fp16 is only supported with --device cuda")
    torch.manual_seed(0)
    n = args.batch
    tokens, width, heads, d_ff = 50, 768, 12, 3072
    t_tokens, t_width, t_heads = 77, 512, 8
    x = torch.randn(n, tokens, width, device=device, dtype=dtype)
    hidden = torch.randn(n, tokens, d_ff, device=device, dtype=dtype)
    q, k, v = (torch.randn(n, heads, tokens, width // heads, device=device, dtype=dtype) for _ in range(3))
    tq, tk, tv = (torch.randn(n, t_heads, t_tokens, t_width // t_heads, device=device, dtype=dtype)
                  for _ in range(3))
    fc1 = torch.nn.Linear(width, d_ff).to(device=device, dtype=dtype).eval()
    norm = torch.nn.LayerNorm(width).to(device=device, dtype=dtype).eval()
    cfg = CLIPVisionConfig(**vision_cfg(32))
    cfg._attn_implementation = "sdpa"
    layer = CLIPEncoderLayer(cfg).to(device=device, dtype=dtype).eval()

    ops = [
        ("vit-b32-layer", "linear-fc1", lambda: fc1(x)),
        ("vit-b32-layer", "attention", lambda: F.scaled_dot_product_attention(q, k, v)),
        ("vit-b32-layer", "layer-norm", lambda: norm(x)),
        ("vit-b32-layer", "quick-gelu", lambda: hidden * torch.sigmoid(1.702 * hidden)),
        ("vit-b32-layer", "encoder-layer", lambda: layer(x, None)),
        ("text-layer", "attention-causal",
         lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=True)),
    ]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    with torch.no_grad():
        for shape, op, fn in ops:
            for _ in range(args.warmup):
                fn()
            sync()
            reset_peak_rss()
            times = []
            start = time.perf_counter()
            while len(times) < args.min_iters or time.perf_counter() - start < args.seconds:
                t0 = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - t0)
            mean_s = statistics.fmean(times)
            row = {
                "bench": f"ops/{shape}/{op}/b{n}",
                "model": shape,
                "what": op,
                "batch": n,
                "items_per_s": n / mean_s,
                "ms_per_iter": mean_s * 1e3,
                "ms_min": min(times) * 1e3,
                "iters": len(times),
                "peak_rss_mb": peak_rss_mb(),
            }
            rows.append(row)
            print(f"{row['bench']}: {row['ms_per_iter']:.2f} ms ({row['items_per_s']:.1f} items/s)")
    out = {"rows": rows, "torch": torch.__version__, "transformers": transformers.__version__,
           "threads": args.threads, "device": args.device, "dtype": args.dtype, "attn": "sdpa"}
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
