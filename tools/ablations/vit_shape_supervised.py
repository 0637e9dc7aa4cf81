#!/usr/bin/env python3
"""How fast can the tiny CLIP's vision tower learn shape at all? An upper bound for pretraining.

Trains transformers' CLIPVisionModel with the tiny run's architecture (experiments/pretrain-tiny.toml:
48 px, patch 6, width 96, 3 layers, 4 heads) plus a linear head *supervised* on the synthetic
world's shape labels (single-object pretraining images of the tiny run's world, objects 0.4/0.5
of the side), AdamW (0.9, 0.98, eps 1e-6, wd 0.1), 50 warm-up steps then cosine, batch 128,
gradient clipping 1.0, and prints test accuracy four times. Contrastive pretraining gets a much
weaker shape signal than these labels, so this bounds what 500 steps (the default run) can reach.

    cargo run --release -p vl-data --example write_world -- /tmp/sw/train shape pretrain 12000 0.4 0.5 0
    cargo run --release -p vl-data --example write_world -- /tmp/sw/test shape eval 2000 0.4 0.5 0
    .venv/bin/python tools/ablations/vit_shape_supervised.py steps=500 [patch=4] [lr=3e-3] ...

Keys: patch, width, layers, heads, lr, wd, steps, bs, pool (cls|mean). Measured on this 2-core CPU
(torch 2.x, 2 threads, seed 0; test accuracy after 500 steps = 64k images): patch 6 77.2%
(150 s), patch 4 81.5% (375 s), patch 8 73.5%, lr 3e-3 69.4%, heads 8 79.0% (189 s),
batch 64 x 1000 steps 77.4%, 6 layers of width 64 68.4%.
"""
import sys, os, glob, time, json, numpy as np, torch
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModel
torch.set_num_threads(2)
def load(d):
    classes = sorted(os.listdir(d)); classes=[c for c in classes if os.path.isdir(os.path.join(d,c))]
    order = ["circle","square","triangle","star","cross","ring","diamond","semicircle"]
    X=[];Y=[]
    for c in order:
        for f in sorted(glob.glob(os.path.join(d,c,"*.png"))):
            X.append(np.asarray(Image.open(f).convert("RGB")));Y.append(order.index(c))
    X=torch.tensor(np.stack(X)).permute(0,3,1,2).float()/255
    mean=torch.tensor([0.48145466,0.4578275,0.40821073]).view(1,3,1,1);std=torch.tensor([0.26862954,0.26130258,0.27577711]).view(1,3,1,1)
    return (X-mean)/std, torch.tensor(Y)
cache=os.environ.get('SHAPE_CACHE', '/tmp/sw/data.pt')
if os.path.exists(cache): Xtr,Ytr,Xte,Yte=torch.load(cache)
else:
    Xtr,Ytr=load("/tmp/sw/train"); Xte,Yte=load("/tmp/sw/test"); torch.save((Xtr,Ytr,Xte,Yte),cache)
args=dict(a.split("=") for a in sys.argv[1:])
patch=int(args.get("patch",6)); width=int(args.get("width",96)); layers=int(args.get("layers",3)); lr=float(args.get("lr",1e-3)); steps=int(args.get("steps",500)); bs=int(args.get("bs",128)); size=int(args.get("size",48))
heads=int(args.get("heads",4)); wd=float(args.get("wd",0.1)); pool=args.get("pool","cls")
torch.manual_seed(0)
cfg=CLIPVisionConfig(hidden_size=width,intermediate_size=4*width,num_hidden_layers=layers,num_attention_heads=heads,image_size=size,patch_size=patch,projection_dim=96)
m=CLIPVisionModel(cfg); head=torch.nn.Linear(width,8)
params=list(m.parameters())+list(head.parameters())
opt=torch.optim.AdamW(params,lr=lr,betas=(0.9,0.98),eps=1e-6,weight_decay=wd)
sched=torch.optim.lr_scheduler.LambdaLR(opt,lambda s: min(1,(s+1)/50)*(0.01+0.99*0.5*(1+np.cos(np.pi*min(s,steps)/steps))))
def evaluate():
    m.eval()
    with torch.no_grad():
        o=m(pixel_values=Xte[:1000]); f=o.pooler_output if pool=="cls" else o.last_hidden_state[:,1:].mean(1)
        acc=(head(f).argmax(1)==Yte[:1000]).float().mean().item()
    m.train(); return acc
t=time.time(); g=torch.Generator().manual_seed(0); out=[]
for s in range(steps):
    idx=torch.randint(0,len(Xtr),(bs,),generator=g)
    x=Xtr[idx]
    if size!=48: x=torch.nn.functional.interpolate(x,size=(size,size),mode="bilinear",align_corners=False)
    o=m(pixel_values=x); f=o.pooler_output if pool=="cls" else o.last_hidden_state[:,1:].mean(1)
    loss=torch.nn.functional.cross_entropy(head(f),Ytr[idx])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params,1.0); opt.step(); sched.step()
    if (s+1)%(steps//4)==0: out.append((s+1,round(loss.item(),3),round(evaluate()*100,1)))
print(sys.argv[1:], out, f"{time.time()-t:.0f}s", flush=True)
