#!/usr/bin/env python3
"""PyTorch twin of vlkit's steps bench (benches/benches/steps.rs), the same shapes:

  vit-b32/lora-step/b{N}    one LoRA fine-tuning step on ViT-B/32's vision tower: transformers'
                            CLIPVisionModelWithProjection (random init, quick_gelu, sdpa), peft
                            LoRA r 8, alpha 16 on q_proj and v_proj (everything else frozen),
                            cosine logits against 100 fixed unit-norm class features at scale 100,
                            cross-entropy, backward, one AdamW step (lr 1e-4) on the adapters.
                            Batch 32 on the CPU, 128 on cuda (as the vlkit bench).
  clip-loss/d512/b{N}       CLIP's symmetric InfoNCE (open_clip's ClipLoss for one process) on
                            [N, 512] unit-norm features that require grad, scale 100, forward and
                            backward; N = 4096.

    .venv/bin/python benches/torch/bench_steps.py --device cpu --threads 2 \
        --json-out target/bench/torch-steps.json
    .venv/bin/python benches/torch/compare.py --ours target/bench/vl-steps-flex.json \
        --torch target/bench/torch-steps.json --out target/bench/compare-steps-flex.md

Random weights, no downloads; fp32. Memory: peak RSS over the timed calls (VmHWM reset after the
warm-up), on cuda also torch.cuda.max_memory_allocated / max_memory_reserved.
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


def timed(step, device, iters, warmup):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def row(bench, model, what, batch, times, device):
    mean_s = statistics.fmean(times)
    r = {"bench": bench, "model": model, "what": what, "batch": batch, "items_per_s": batch / mean_s,
         "ms_per_iter": mean_s * 1e3, "ms_min": min(times) * 1e3, "iters": len(times),
         "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        r["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        r["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    print(f"# {bench}: {r['ms_per_iter']:.1f} ms/iter, {r['items_per_s']:.2f} items/s", file=sys.stderr, flush=True)
    return r


def lora_step(device, batch):
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(**vision_cfg(32), projection_dim=512)
    model = CLIPVisionModelWithProjection._from_config(cfg, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"])).to(device)
    model.train()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    classes = F.normalize(torch.randn(100, 512, generator=g), dim=-1).to(device)
    targets = (torch.arange(batch) % 100).to(device)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        image = F.normalize(model(pixel_values=pixels).image_embeds, dim=-1)
        loss = F.cross_entropy(100.0 * image @ classes.t(), targets)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    return step


def clip_loss_step(device, batch):
    g = torch.Generator().manual_seed(2)
    image = F.normalize(torch.randn(batch, 512, generator=g), dim=-1).to(device).requires_grad_()
    text = F.normalize(torch.randn(batch, 512, generator=g), dim=-1).to(device).requires_grad_()
    labels = torch.arange(batch, device=device)

    def step():
        logits = 100.0 * image @ text.t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        image.grad = text.grad = None
        loss.backward()

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=None, help="timed steps (default 5 on cpu, 20 on cuda)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lora-batch", type=int, default=None, help="default 32 on cpu, 128 on cuda")
    ap.add_argument("--loss-batch", type=int, default=4096)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("CUDA is not available in this torch build / machine")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    iters = args.iters or (20 if device.type == "cuda" else 5)
    lora_batch = args.lora_batch or (128 if device.type == "cuda" else 32)

    import peft
    import transformers

    rows = [
        row(f"vit-b32/lora-step/b{lora_batch}", "vit-b32", "lora-step", lora_batch,
            timed(lora_step(device, lora_batch), device, iters, args.warmup), device),
        row(f"clip-loss/d512/b{args.loss_batch}", "clip-loss", "loss-step", args.loss_batch,
            timed(clip_loss_step(device, args.loss_batch), device, iters, args.warmup), device),
    ]
    out = {"rows": rows, "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "threads": args.threads, "device": args.device, "dtype": "fp32",
           "attn": "sdpa"}
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        tmp = f"{args.json_out}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json_out)


if __name__ == "__main__":
    main()
