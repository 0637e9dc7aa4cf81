#!/usr/bin/env python3
"""PyTorch proxy of the tiny CLIP pretraining (experiments/pretrain-tiny.toml): does contrastive
pretraining on the synthetic world's captions teach the vision tower shape, and how fast?

transformers' CLIPModel with the tiny architecture (vision 48 px / patch 6 / width 96 / 3 layers /
4 heads, text width 96 / 2 layers / 4 heads / 32 tokens, projection 96, quick_gelu), the CLIP loss,
AdamW (0.9, 0.98, eps 1e-6, wd 0.1), warm-up then cosine, gradient clipping 1.0, batch 128, over
images written by the Rust generator; prints held-out zero-shot shape accuracy (marginal of the
64 pair prompts, 5 templates) as it goes. A cross-check of the Burn run and a faster loop for
ablations; not part of CI.

    W=target/release/examples/write_world
    $W /tmp/cl/pre background pretrain 64000 0.4 0.5 0 6     # every image, with captions
    $W /tmp/cl/ho shape held_out 512 0.4 0.5 0 6              # one-object held-out images
    .venv/bin/python tools/ablations/clip_shape_contrastive.py tok=runs/grid6/tokenizer.json steps=500

Keys: steps, bs, lr, warmup, wd, scale (initial logit scale, log), patch, vlayers, tlayers, width,
data (/tmp/cl), tok, seed, evals (how many evaluations). THREADS=1 in the environment runs two at
once on the 2-core machine.

Measured on this 2-core CPU (torch 2 threads, seed 0; held-out zero-shot shape after 500 steps;
the write_world arguments after SEED are GRID and OUTLINE):
- continuous positions, no outline (the old default world): 32.8% (Burn: 22.9-30.5%), in-batch
  accuracy 61.7%; batch 32 x 2000 steps: 52.5%; lr 3e-3: 10.5% after 200 steps;
- positions on the 6-px patch grid, no outline: the same plateau (Burn, 10 epochs: 30.5%);
- continuous positions with a 1-px outline: 18.4% after 400 steps;
- grid and outline together (the first outline variant, the shape scaled up by 2 px, which is
  thinner than 1 px near the centre of concave shapes; the same world in Burn gave 81.6%, and the
  committed true 1-px contour 97.1%): 50.6% after 200 steps, 89.5% after 300, 90.8% after 500 (336 s
  with 1 thread beside another job; 211 s for 500 steps alone on 2 threads, where Burn flex takes
  about 530 s for the same model and batch).
With grid-aligned objects a supervised ViT learns shape in 250 steps (100%, vit_shape_supervised.py
on write_world ... 0 6), so the tower can see shape; contrastive captions only teach it once the
outline makes shape a colour-independent pixel pattern.
"""
import glob, json, math, os, sys, time

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import CLIPConfig, CLIPModel

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
args = dict(a.split("=", 1) for a in sys.argv[1:])
get = lambda k, d: type(d)(args.get(k, d))
steps, bs, lr = get("steps", 500), get("bs", 128), get("lr", 1e-3)
warmup, wd, seed = get("warmup", 50), get("wd", 0.1), get("seed", 0)
data, evals = get("data", "/tmp/cl"), get("evals", 5)
tok = Tokenizer.from_file(get("tok", "runs/grid6/tokenizer.json"))
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "semicircle"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink"]
TEMPLATES = ["{}", "a photo of {}", "there is {}", "an image of {}", "a picture of {}"]
CTX = 32
EOT = tok.token_to_id("<|endoftext|>")


def images(paths):
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return (torch.tensor(x).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


def tokens(texts):
    ids = torch.full((len(texts), CTX), EOT, dtype=torch.long)
    for i, t in enumerate(texts):
        e = tok.encode(t).ids[:CTX]
        ids[i, : len(e)] = torch.tensor(e)
    return ids


def load(d, cache):
    if os.path.exists(cache):
        return torch.load(cache)
    rows = [json.loads(l) for l in open(os.path.join(d, "captions.jsonl"))]
    x = images([os.path.join(d, r["path"]) for r in rows])
    out = (x, [r["caption"] for r in rows], [r["path"].split("/")[0] for r in rows])
    torch.save(out, cache)
    return out


X, caps, _ = load(f"{data}/pre", f"{data}/pre.pt")
XH, _, lab = load(f"{data}/ho", f"{data}/ho.pt")
YH = torch.tensor([SHAPES.index(c) for c in lab])
T = tokens(caps)
torch.manual_seed(seed)
cfg = CLIPConfig(
    text_config=dict(hidden_size=get("width", 96), intermediate_size=4 * get("width", 96),
                     num_hidden_layers=get("tlayers", 2), num_attention_heads=4,
                     max_position_embeddings=CTX, vocab_size=tok.get_vocab_size(),
                     eos_token_id=EOT, bos_token_id=tok.token_to_id("<|startoftext|>")),
    vision_config=dict(hidden_size=get("width", 96), intermediate_size=4 * get("width", 96),
                       num_hidden_layers=get("vlayers", 3), num_attention_heads=4, image_size=48,
                       patch_size=get("patch", 6)),
    projection_dim=96, logit_scale_init_value=get("scale", 2.6592))
m = CLIPModel(cfg)
decay = [p for n, p in m.named_parameters() if p.ndim >= 2]
rest = [p for n, p in m.named_parameters() if p.ndim < 2]
opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=wd)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1, (s + 1) / warmup) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
prompts = tokens([t.format(("an " if c[0] in "aeiou" else "a ") + f"{c} {s}")
                  for t in TEMPLATES for s in SHAPES for c in COLOURS])


def evaluate():
    m.eval()
    with torch.no_grad():
        t = torch.nn.functional.normalize(m.get_text_features(input_ids=prompts).pooler_output, dim=-1)
        t = torch.nn.functional.normalize(t.view(len(TEMPLATES), 64, -1).mean(0), dim=-1)
        v = torch.nn.functional.normalize(m.get_image_features(pixel_values=XH).pooler_output, dim=-1)
        p = (100 * v @ t.T).softmax(-1).view(-1, 8, 8).sum(-1)
        acc = (p.argmax(-1) == YH).float().mean().item() * 100
    m.train()
    return acc


g = torch.Generator().manual_seed(seed)
perm = torch.randperm(len(X), generator=g)
t0, out = time.time(), []
for s in range(steps):
    idx = perm[(s * bs) % len(X):][:bs]
    o = m(input_ids=T[idx], pixel_values=X[idx], return_loss=True)
    opt.zero_grad()
    o.loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        m.logit_scale.clamp_(0, math.log(100))
    if (s + 1) % (steps // evals) == 0:
        acc = (o.logits_per_image.argmax(-1) == torch.arange(len(idx))).float().mean().item() * 100
        out.append((s + 1, round(o.loss.item(), 3), round(acc, 1), round(evaluate(), 1)))
        print(out[-1], f"{time.time() - t0:.0f}s", flush=True)
print(sys.argv[1:], out, f"{time.time() - t0:.0f}s")
