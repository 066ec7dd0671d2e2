"""DeiT-tiny-style Vision Transformer (Touvron et al. 2021): 16x16 patches,
dim 192, 12 blocks, 3 heads, MLP 768, 224x224 input, class token, no
distillation token. Parameter count matches timm's deit_tiny_patch16_224
(5.72 M).

Attention is written out with torch.matmul so q@k^T and attn@v show up as
matmul nodes for the compiler, and the forward pass has no tensor-dependent
Python control flow so torch.fx can trace it.
"""
from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        # (B, T, 3*dim) -> (3, B, heads, T, head_dim); unflatten keeps B and T
        # symbolic, which fx needs.
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        out = torch.matmul(attn.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, img: int, patch: int, in_ch: int, dim: int):
        super().__init__()
        self.n_patches = (img // patch) ** 2
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img: int = 224, patch: int = 16, in_ch: int = 3, num_classes: int = 1000,
                 dim: int = 192, depth: int = 12, heads: int = 3, mlp_dim: int = 768):
        super().__init__()
        self.patch_embed = PatchEmbed(img, patch, in_ch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.n_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        # timm's ViT init is trunc_normal_(std=0.02) with the default cut at
        # +-2 absolute, i.e. 100 sigma: a plain normal(0, 0.02), drawn here
        # without trunc_normal_'s slow erfinv.
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def deit_tiny(num_classes: int = 1000, in_ch: int = 3) -> VisionTransformer:
    return VisionTransformer(in_ch=in_ch, num_classes=num_classes)
