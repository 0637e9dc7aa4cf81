#!/usr/bin/env python3
"""PyTorch twin of vlkit's CoOp-step bench (benches/benches/prompting.rs): one CoOp training step
at the ViT-B/16 text-tower size (width 512, 12 layers, 8 heads, quick_gelu), 100 classes, 16
context vectors, every prompt 77 tokens, 32 image features: assemble [SOS] ctx name [EOT] ...
embeddings, run transformers' CLIP text tower (frozen, requires_grad False) from inputs_embeds
with its causal mask, pool at the EOT, project, cross-entropy of the scaled cosine logits,
backward, one SGD step on the context (CoOp's PromptLearner + TextEncoder, trainers/coop.py).

    .venv/bin/python benches/torch/bench_prompting.py --threads 2 --iters 5 --warmup 1 \
        --json-out target/bench/torch-prompting.json
    .venv/bin/python benches/torch/compare.py --ours target/bench/vl-prompting-flex.json \
        --torch target/bench/torch-prompting.json --out target/bench/compare-prompting-flex.md

Random weights, no downloads. Memory: peak RSS over the timed calls (VmHWM reset after warm-up),
on cuda also torch.cuda.max_memory_allocated / max_memory_reserved.
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
from bench_encoders import TEXT_CFG, peak_rss_mb, reset_peak_rss  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    import transformers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    from transformers.masking_utils import create_causal_mask

    torch.manual_seed(0)
    cfg = CLIPTextConfig(**TEXT_CFG, projection_dim=512)
    model = CLIPTextModelWithProjection._from_config(cfg, attn_implementation="sdpa").to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    text = model.text_model
    n, m, d, L, b = args.classes, 16, 512, 77, 32
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 49406, (n, L), generator=g)
    ids[:, 0] = 49406
    ids[:, -1] = 49407
    ids = ids.to(device)
    with torch.no_grad():
        emb = text.embeddings.token_embedding(ids)
    prefix, suffix = emb[:, :1], emb[:, 1 + m:]
    ctx = torch.nn.Parameter(torch.randn(m, d, generator=g).mul(0.02).to(device))
    image = F.normalize(torch.randn(b, 512, generator=g), dim=-1).to(device)
    targets = (torch.arange(b) % n).to(device)
    scale = torch.tensor(100.0, device=device)
    optim = torch.optim.SGD([ctx], lr=0.002)

    def step():
        prompts = torch.cat([prefix, ctx.unsqueeze(0).expand(n, -1, -1), suffix], 1)
        h = text.embeddings(inputs_embeds=prompts)
        mask = create_causal_mask(config=text.config, inputs_embeds=h, attention_mask=None,
                                  past_key_values=None)
        h = text.encoder(inputs_embeds=h, attention_mask=mask, is_causal=True).last_hidden_state
        h = text.final_layer_norm(h)
        pooled = h[torch.arange(n, device=device), ids.argmax(-1)]
        t = F.normalize(model.text_projection(pooled), dim=-1)
        loss = F.cross_entropy(scale * image @ t.t(), targets)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    mean_s = statistics.fmean(times)
    row = {
        "bench": f"vit-b16-text/coop-step/c{n}",
        "model": "vit-b16-text",
        "what": "coop-step",
        "batch": n,
        "items_per_s": n / mean_s,
        "ms_per_iter": mean_s * 1e3,
        "ms_min": min(times) * 1e3,
        "iters": args.iters,
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.type == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    out = {"rows": [row], "torch": torch.__version__, "transformers": transformers.__version__,
           "threads": args.threads, "device": args.device, "dtype": "fp32", "attn": "sdpa"}
    print(json.dumps(row, indent=1))
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
