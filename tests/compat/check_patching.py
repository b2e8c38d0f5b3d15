"""Activation patching on a tiny torch transformer (run in a side env with torch; tests/test_explain.py).

Prints JSON with R per block and head, R with every block restored and with none.
"""

from __future__ import annotations

import json
import sys

import torch

from bomb_data.explain.patching import restoration_ratios


class Attn(torch.nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h, self.qkv, self.o_proj = h, torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, -1) @ v
        return self.o_proj(a.transpose(1, 2).reshape(b, t, d))


class Block(torch.nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.ln, self.self_attn = torch.nn.LayerNorm(d), Attn(d, h)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.self_attn(self.ln(x))
        return x + self.mlp(x)


class Tiny(torch.nn.Module):
    def __init__(self, d: int = 16, h: int = 4, n: int = 3):
        super().__init__()
        self.embed = torch.nn.Linear(8, d)
        self.layers = torch.nn.ModuleList(Block(d, h) for _ in range(n))
        self.head = torch.nn.Linear(d, 7)

    def forward(self, x):
        x = self.embed(x)
        for b in self.layers:
            x = b(x)
        return self.head(x.mean(1))


def main() -> None:
    torch.manual_seed(0)
    m = Tiny().eval()
    clean = torch.randn(1, 6, 8)
    corrupt = clean.clone()
    corrupt[0, 2] = 0.0  # "occlude" one input token
    with torch.no_grad():
        y = m(clean)

    def score(x):  # Gaussian log-likelihood of the clean prediction
        with torch.no_grad():
            return float(-0.5 * ((m(x) - y) ** 2).sum() / 0.01)

    blocks = [(f"layer{i}", b) for i, b in enumerate(m.layers)]
    heads = [(f"layer{i}", b.self_attn.o_proj, 4) for i, b in enumerate(m.layers)]
    whole = restoration_ratios(score, clean, corrupt, blocks, heads)
    at_token = restoration_ratios(score, clean, corrupt, blocks, heads, positions=[2])
    json.dump({"whole": whole, "at_token": at_token}, sys.stdout)


if __name__ == "__main__":
    main()
