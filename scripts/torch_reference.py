#!/usr/bin/env python3
"""The original's per-step networks in PyTorch, timed on the GPU.

The released Collaborative Diffusion models (ziqihuangg/Collaborative-Diffusion)
run each step through two LDM UNets (openaimodel.UNetModel) and two dynamic
diffusers (the same class, smaller). The original repository cannot be reached
from the GPU machine, so this builds the same networks from the original YAML
configs, written from the description in shared/reference/FACTS.md, and proves
them the same architecture: their state_dict keys and shapes must equal the
released checkpoint's (shared/reference/official-manifest.json) exactly, or the
script stops. Attention is computed as the original does (einsum, softmax,
einsum), not with a fused kernel, so the times are the original's.

    python3 scripts/torch_reference.py --shared DIR --out times.json

Prints and writes milliseconds per forward (median of --reps after warm-ups),
with TF32 off (as our CUDA build computes) and with PyTorch's defaults.
"""

import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
import yaml
from torch import nn


def group_norm(channels, eps=1e-5):
    return nn.GroupNorm(32, channels, eps=eps)


class TimestepEmbedding(nn.Module):
    def __init__(self, model_channels):
        super().__init__()
        self.model_channels = model_channels

    def forward(self, t):
        half = self.model_channels // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            group_norm(out_channels), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape

        def split(t):
            return t.reshape(b, t.shape[1], self.heads, -1).permute(0, 2, 1, 3).reshape(b * self.heads, t.shape[1], -1)

        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        sim = torch.einsum("bid,bjd->bij", q, k) * self.scale
        out = torch.einsum("bij,bjd->bid", sim.softmax(dim=-1), v)
        out = out.reshape(b, self.heads, n, -1).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class TransformerBlock(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))
        self.attn2 = CrossAttention(dim, context_dim, heads)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff.net(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, channels, context_dim, heads, depth):
        super().__init__()
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(TransformerBlock(channels, context_dim, heads) for _ in range(depth))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            y = block(y, context)
        return x + self.proj_out(y.reshape(b, h, w, c).permute(0, 3, 1, 2))


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Sequence(nn.ModuleList):
    """TimestepEmbedSequential: the time embedding to ResBlocks, the context to transformers."""

    def forward(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """openaimodel.UNetModel with use_spatial_transformer and legacy False."""

    def __init__(self, p):
        super().__init__()
        mc, mult, n_res = p["model_channels"], p["channel_mult"], p["num_res_blocks"]
        heads, context_dim, depth = p["num_heads"], p["context_dim"], p.get("transformer_depth", 1)
        emb = 4 * mc
        self.timestep = TimestepEmbedding(mc)
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))

        def attention(ch):
            # A fixed head count, or (num_head_channels set) a fixed head width.
            head_channels = p.get("num_head_channels", -1)
            return SpatialTransformer(ch, context_dim, heads if head_channels == -1 else ch // head_channels, depth)

        self.input_blocks = nn.ModuleList([Sequence([nn.Conv2d(p["in_channels"], mc, 3, padding=1)])])
        skips, ch, ds = [mc], mc, 1
        for level, m in enumerate(mult):
            for _ in range(n_res):
                layers = [ResBlock(ch, emb, m * mc)]
                ch = m * mc
                if ds in p["attention_resolutions"]:
                    layers.append(attention(ch))
                self.input_blocks.append(Sequence(layers))
                skips.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(Sequence([Downsample(ch)]))
                skips.append(ch)
                ds *= 2
        self.middle_block = Sequence([ResBlock(ch, emb, ch), attention(ch), ResBlock(ch, emb, ch)])
        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(n_res + 1):
                layers = [ResBlock(ch + skips.pop(), emb, mc * m)]
                ch = mc * m
                if ds in p["attention_resolutions"]:
                    layers.append(attention(ch))
                if level and i == n_res:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Sequence(layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(mc, p["out_channels"], 3, padding=1))

    def forward(self, x, t, context):
        emb = self.time_embed(self.timestep(t))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


def unet_params(configs, name):
    """The UNet parameters of a uni-modal config, or of the composed config's dynamic diffuser."""
    config = yaml.safe_load(open(os.path.join(configs, name)))["model"]["params"]
    if "unet_config" in config:
        return config["unet_config"]["params"]
    return config["compose_unet_config"]["params"]["confidence_map_predictor_config"]["params"]


def check_against_manifest(net, manifest, prefix):
    want = {k[len(prefix):]: v for k, v in manifest.items() if k.startswith(prefix)}
    got = {k: list(v.shape) for k, v in net.state_dict().items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if missing or extra or wrong:
        raise SystemExit(f"{prefix}: not the released architecture: missing {missing[:5]}, extra {extra[:5]}, shapes {wrong[:5]}")
    return sum(math.prod(s) for s in want.values())


def median_ms(fn, reps, device, warmup=3):
    def wait():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        for _ in range(warmup):
            fn()
        wait()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            wait()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", required=True, help="the folder holding reference/configs and reference/official-manifest.json")
    parser.add_argument("--out", help="write the figures here as JSON")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to try the script where there is no GPU")
    args = parser.parse_args()
    configs = os.path.join(args.shared, "reference", "configs")
    manifest = json.load(open(os.path.join(args.shared, "reference", "official-manifest.json")))["256_codiff_mask_text"]
    device = torch.device(args.device)
    torch.manual_seed(0)
    unet = UNetModel(unet_params(configs, "256_mask.yaml"))
    diffuser = UNetModel(unet_params(configs, "256_codiff_mask_text.yaml"))
    figures = {
        "unet_parameters_m": check_against_manifest(unet, manifest, "model.seg_mask_unet.diffusion_model.") / 1e6,
        "diffuser_parameters_m": check_against_manifest(diffuser, manifest, "model.seg_mask_confidence_predictor.diffusion_model.") / 1e6,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    unet, diffuser = unet.to(device).eval(), diffuser.to(device).eval()
    x = torch.randn(1, 3, 64, 64, device=device)
    t = torch.full((1,), 501.0, device=device)
    mask_context = torch.randn(1, 19, 640, device=device)
    text_context = torch.randn(1, 77, 640, device=device)

    def collaborative_step():
        # Two UNets and two diffusers (the same weights serve: only the time counts), softmax, combination.
        eps_mask, eps_text = unet(x, t, mask_context), unet(x, t, text_context)
        weights = torch.cat([diffuser(x, t, mask_context), diffuser(x, t, text_context)], dim=1).softmax(dim=1)
        return weights[:, :1] * eps_mask + weights[:, 1:] * eps_text

    for label, tf32 in [("tf32_off", False), ("torch_defaults", None)]:
        if tf32 is None:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = True
        else:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        time_ms = lambda fn: median_ms(fn, args.reps, device, args.warmup)  # noqa: E731
        figures[f"unet_ms_{label}"] = time_ms(lambda: unet(x, t, mask_context))
        figures[f"diffuser_ms_{label}"] = time_ms(lambda: diffuser(x, t, mask_context))
        figures[f"collab_step_ms_{label}"] = time_ms(collaborative_step)
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
