"""Activation patching for in-process torch policies: where in the network is the decision carried?

Units are transformer **blocks** (a module whose output is replaced) and attention **heads** (the
input of the module that mixes the concatenated heads — ``o_proj`` in LLaMA, ``out_proj`` of a
hand-written attention — split into ``n_heads`` equal chunks on the last dimension). For a clean and a
corrupted observation of the same shape (an occluded patch, a span replaced by a neutral token of the
same token count, or attention masking; a deleted span changes the token count and cannot be patched
position by position):

1. run the clean input and cache every unit's activation (forward hooks);
2. run the corrupted input: L_corr;
3. for each unit u, run the corrupted input with u's activation replaced by its clean one:
   L_patched(u); the restoration ratio is **R(u) = (L_patched(u) − L_corr) / (L_clean − L_corr)**.

R(u) = 1: restoring u alone restores the clean decision; 0: u carries nothing of the difference.
Restoring every block restores the output (R = 1); restoring none leaves L_corr (R = 0).

The tiny interface: a policy (its ``python:`` object) with ``score(obs, actions) -> float`` and
``explain_modules() -> {"blocks": [(name, module), ...], "heads": [(name, module, n_heads), ...]}``.
Ready mappings: ``llama_units(model)`` (LLaMA-style decoders as in OpenVLA: ``model.layers[i]`` and
``layers[i].self_attn.o_proj``) and ``act_units(policy)`` (LeRobot's ACT: encoder and decoder layers,
and the heads of every ``nn.MultiheadAttention`` in them — see ``split_mha_heads``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Unit = tuple[str, Any]


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _replace_first(out: Any, new: Any) -> Any:
    return (new, *out[1:]) if isinstance(out, tuple) else new


def restoration_ratios(score: Callable[[Any], float], clean: Any, corrupt: Any, blocks: list[Unit],
                       heads: list[tuple[str, Any, int]] | None = None, *, all_blocks: bool = True,
                       positions: list[int] | None = None) -> dict[str, Any]:
    """R(u) for every block and head (see the module docstring).

    Args:
        score: ``obs -> L`` (the white-box log-likelihood of the clean prediction, run under no_grad).
        clean, corrupt: the two observations (the same shapes all through the network).
        blocks: ``(name, module)``; the module's output (or its first element) is replaced.
        heads: ``(name, module, n_heads)``; chunk h of the module's input's last dimension is replaced.
        all_blocks: also report ``R_all_blocks`` (every block restored at once; 1 by construction).
        positions: restore only these sequence positions (dimension 1, batch first), e.g. the tokens of
            the occluded patch or of the masked span. Without, a block of a residual network restores
            the whole residual stream, hence everything after it (R = 1 for every block).

    Returns:
        ``{"L_clean", "L_corr", "blocks": {name: R}, "heads": {name: [R per head]}, "R_all_blocks",
        "R_none"}``; R is None when L_clean == L_corr (nothing to restore).
    """
    cache: dict[str, Any] = {}
    handles = []
    for name, m in blocks:
        handles.append(m.register_forward_hook(lambda _m, _i, o, _n=name: cache.__setitem__(_n, _first(o).detach())))
    for name, m, _ in heads or []:
        handles.append(m.register_forward_pre_hook(
            lambda _m, i, _n=name: cache.__setitem__("head:" + _n, i[0].detach())))
    try:
        l_clean = float(score(clean))
    finally:
        for h in handles:
            h.remove()
    l_corr = float(score(corrupt))
    den = l_clean - l_corr

    def ratio(v: float) -> float | None:
        return None if den == 0 else (v - l_corr) / den

    def patched(hooks: list[tuple[Any, str, Callable[..., Any]]]) -> float:
        hs = [m.register_forward_hook(fn) if kind == "out" else m.register_forward_pre_hook(fn)
              for m, kind, fn in hooks]
        try:
            return float(score(corrupt))
        finally:
            for h in hs:
                h.remove()

    def mix(now: Any, clean_v: Any, sl: Any = ...) -> Any:
        x = now.clone()
        if positions is None:
            x[..., sl] = clean_v[..., sl] if sl is not ... else clean_v
            return x if sl is not ... else clean_v
        x[:, positions, ..., sl] = clean_v[:, positions, ..., sl]
        return x

    def block_hook(name: str) -> Callable[..., Any]:
        return lambda _m, _i, o: _replace_first(o, mix(_first(o), cache[name]))

    out: dict[str, Any] = {"L_clean": l_clean, "L_corr": l_corr, "blocks": {}, "heads": {}}
    for name, m in blocks:
        out["blocks"][name] = ratio(patched([(m, "out", block_hook(name))]))
    for name, m, n_heads in heads or []:
        full = cache["head:" + name]
        d = full.shape[-1] // n_heads
        rs = []
        for h in range(n_heads):
            def pre(_m: Any, i: tuple[Any, ...], _sl: slice = slice(h * d, (h + 1) * d), _full: Any = full
                    ) -> tuple[Any, ...]:
                return (mix(i[0], _full, _sl), *i[1:])
            rs.append(ratio(patched([(m, "pre", pre)])))
        out["heads"][name] = rs
    if all_blocks:
        out["R_all_blocks"] = ratio(patched([(m, "out", block_hook(n)) for n, m in blocks]))
    out["R_none"] = ratio(l_corr)
    return out


def llama_units(model: Any) -> dict[str, list[Any]]:
    """Blocks and heads of a LLaMA-style decoder (HF ``LlamaForCausalLM`` or its ``.model``; OpenVLA:
    ``vla.language_model``): ``layers[i]`` and ``layers[i].self_attn.o_proj`` with ``num_heads``."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError("llama_units: no .layers (expected a LLaMA-style decoder or its .model)")
    n = getattr(getattr(model, "config", None), "num_attention_heads", None) or layers[0].self_attn.num_heads
    return {"blocks": [(f"layer{i}", b) for i, b in enumerate(layers)],
            "heads": [(f"layer{i}", b.self_attn.o_proj, int(n)) for i, b in enumerate(layers)]}


def split_mha_heads(mha: Any) -> Any:
    """Make the heads of a ``torch.nn.MultiheadAttention`` hookable; returns its ``out_proj``.

    ``nn.MultiheadAttention`` applies ``out_proj`` inside one fused functional call, so no hook sees the
    concatenated heads. This replaces the instance's ``forward`` (idempotent) by the same computation in
    two steps: ``F.multi_head_attention_forward`` with an identity output projection (its output is the
    concatenated heads, head h at ``[h*d/n, (h+1)*d/n)`` of the last dimension), then ``out_proj`` called
    as a module, so a forward pre-hook on ``out_proj`` sees — and may replace — single heads, exactly as
    ``o_proj`` of a LLaMA layer. Same result as the fused call (up to float rounding; tested). Only the
    packed projection (query, key and value of one size), as LeRobot's ACT uses it.
    """
    import types

    if getattr(mha, "_bomb_split_heads", False):
        return mha.out_proj
    if not getattr(mha, "_qkv_same_embed_dim", True):
        raise ValueError("split_mha_heads: separate query/key/value projections are not supported")
    mha.forward = types.MethodType(_split_forward, mha)  # bound: a deep copy of the module stays its own
    mha._bomb_split_heads = True
    return mha.out_proj


def _split_forward(mha: Any, query: Any, key: Any, value: Any, key_padding_mask: Any = None,
                   need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                   is_causal: bool = False) -> Any:
    """``nn.MultiheadAttention.forward`` with the output projection applied as a module (``split_mha_heads``)."""
    import torch
    from torch.nn import functional as F

    q, k, v = query, key, value
    if mha.batch_first:
        q, k, v = (x.transpose(0, 1) for x in (q, k, v))
    d = mha.embed_dim
    eye = torch.eye(d, dtype=q.dtype, device=q.device)
    heads, weights = F.multi_head_attention_forward(
        q, k, v, d, mha.num_heads, mha.in_proj_weight, mha.in_proj_bias, mha.bias_k, mha.bias_v,
        mha.add_zero_attn, mha.dropout, eye, None, training=mha.training, key_padding_mask=key_padding_mask,
        need_weights=need_weights, attn_mask=attn_mask, average_attn_weights=average_attn_weights,
        is_causal=is_causal)
    out = mha.out_proj(heads)
    return (out.transpose(0, 1) if mha.batch_first else out), weights


def act_units(policy: Any) -> dict[str, list[Any]]:
    """Blocks and heads of LeRobot's ACT (``policy.model.encoder.layers``, ``policy.model.decoder.layers``).

    Blocks: every encoder and decoder layer (its output, the residual stream, sequence first). Heads:
    ``encoder{i}`` (self-attention), ``decoder{i}.self`` and ``decoder{i}.cross`` (the decoder's
    self- and cross-attention), made hookable by ``split_mha_heads`` (this patches the policy's
    attention modules in place; their results are unchanged). ACT's activations are sequence first,
    so ``positions`` (batch first) does not apply to it.
    """
    m = getattr(policy, "model", policy)
    blocks = [(f"encoder{i}", b) for i, b in enumerate(m.encoder.layers)]
    blocks += [(f"decoder{i}", b) for i, b in enumerate(m.decoder.layers)]
    heads = [(f"encoder{i}", split_mha_heads(b.self_attn), b.self_attn.num_heads)
             for i, b in enumerate(m.encoder.layers)]
    for i, b in enumerate(m.decoder.layers):
        heads.append((f"decoder{i}.self", split_mha_heads(b.self_attn), b.self_attn.num_heads))
        heads.append((f"decoder{i}.cross", split_mha_heads(b.multihead_attn), b.multihead_attn.num_heads))
    return {"blocks": blocks, "heads": heads}
