"""Activation patching on a tiny torch transformer (run in a side env with torch; tests/test_explain.py).

Without arguments: prints JSON with R per block and head, R with every block restored and with none.
With ``frame``: one frame through ``explain_frame`` with ``patching`` on ``TinyPolicy`` (a torch policy on
32 x 32 agentview images); prints the frame row.
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


class TinyPolicy:
    """A white-box torch policy: 8-px patch tokens of the agentview image -> 2 blocks -> action."""

    def __init__(self):
        torch.manual_seed(1)
        self.m = Tiny(d=16, h=4, n=2).eval()
        self.m.embed = torch.nn.Linear(8 * 8 * 3, 16)

    def _tokens(self, obs):
        x = torch.as_tensor(obs["agentview"], dtype=torch.float32) / 255.0  # (32, 32, 3)
        return x.unfold(0, 8, 8).unfold(1, 8, 8).reshape(1, 16, -1)

    def act(self, obs):
        with torch.no_grad():
            return self.m(self._tokens(obs))[0].numpy().astype("float64") * 0.001

    def score(self, obs, actions):
        import numpy as np

        d = np.asarray(actions, float).reshape(-1, 7)[0] - self.act(obs)
        return float(-0.5 * np.sum((d / 0.0001) ** 2))

    def explain_modules(self):
        return {"blocks": [(f"layer{i}", b) for i, b in enumerate(self.m.layers)],
                "heads": [(f"layer{i}", b.self_attn.o_proj, 4) for i, b in enumerate(self.m.layers)]}


def explain_run() -> None:
    """One frame through ``explain_frame`` with ``patching`` (no simulator: a random 32 x 32 image)."""
    import numpy as np

    from bomb_data.evaluate.adapt import AdapterConfig
    from bomb_data.evaluate.policies import PythonPolicy
    from bomb_data.evaluate.runner import EpisodeSpec
    from bomb_data.explain import ExplainSettings, Scorer
    from bomb_data.explain.runner import Rollout, explain_frame

    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    text = "put the black stone from the tray on row 1 from the near edge, column 2 from the left edge"
    a = text.index("row 1 from the near edge")
    rec = Rollout("nominal/0", text, text, {"row": [(a, a + 24)]}, (3, 2), [], obs=[{"agentview": img}],
                  privileged=[{}])
    s = ExplainSettings(patch=8, spans=("row",), patching=True, cameras=("agentview",))
    adapter = AdapterConfig(image_keys={"agentview": "agentview"}, state_key=None, state_layout="none")
    scorer = Scorer(PythonPolicy("tests.compat.check_patching:TinyPolicy"), "white")
    row, maps = explain_frame(scorer, adapter, EpisodeSpec("nominal/0", "nominal", 0, 7, {}), rec, 0, s,
                              ["agentview"])
    json.dump({"row": row, "map_shape": list(maps["agentview"].shape)}, sys.stdout)


def mha_split() -> None:
    """``split_mha_heads`` against the fused ``nn.MultiheadAttention``: same outputs (sequence and batch
    first, with a key padding mask), a pre-hook on ``out_proj`` replacing one head changes the output only
    through that head's columns, a deep copy runs its own weights."""
    import copy

    from bomb_data.explain.patching import split_mha_heads

    res = {}
    for batch_first in (False, True):
        torch.manual_seed(0)
        mha = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
        x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
        pad = torch.zeros(2, 5, dtype=torch.bool)
        pad[1, 4] = True
        with torch.no_grad():
            ref = mha(x, x, x, key_padding_mask=pad)[0]
            split_mha_heads(mha)
            got = mha(x, x, x, key_padding_mask=pad)[0]
            h = mha.out_proj.register_forward_pre_hook(lambda _m, i: (torch.cat([i[0][..., :4], 0 * i[0][..., 4:8],
                                                                                 i[0][..., 8:]], -1),))
            zeroed = mha(x, x, x, key_padding_mask=pad)[0]
            h.remove()
            heads = (got - mha.out_proj.bias) @ torch.linalg.inv(mha.out_proj.weight).T
            expect = got - heads[..., 4:8] @ mha.out_proj.weight[:, 4:8].T
            twin = copy.deepcopy(mha)
            with torch.no_grad():
                twin.in_proj_weight.mul_(2)
            same_after_copy = float((mha(x, x, x, key_padding_mask=pad)[0] - got).abs().max())
            copy_own = float((twin(x, x, x, key_padding_mask=pad)[0] - got).abs().max())
        res[f"batch_first={batch_first}"] = {"split_diff": float((got - ref).abs().max()),
                                             "head1_zeroed_diff": float((zeroed - expect).abs().max()),
                                             "head1_effect": float((zeroed - got).abs().max()),
                                             "original_after_copy_changed": same_after_copy,
                                             "copy_differs": copy_own}
    json.dump(res, sys.stdout)


def main() -> None:
    if sys.argv[1:] == ["frame"]:
        explain_run()
        return
    if sys.argv[1:] == ["mha"]:
        mha_split()
        return
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
