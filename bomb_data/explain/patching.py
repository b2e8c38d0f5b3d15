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
``layers[i].self_attn.o_proj``) and ``act_units(policy)`` (LeRobot's ACT: encoder and decoder layers;
its ``nn.MultiheadAttention`` fuses the head mixing into one call, so heads are not hookable there and
only blocks are returned).
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


def act_units(policy: Any) -> dict[str, list[Any]]:
    """Blocks of LeRobot's ACT (``policy.model.encoder.layers``, ``policy.model.decoder.layers``); no heads
    (``nn.MultiheadAttention`` applies ``out_proj`` inside one fused call, so no hook sees single heads)."""
    m = getattr(policy, "model", policy)
    blocks = [(f"encoder{i}", b) for i, b in enumerate(m.encoder.layers)]
    blocks += [(f"decoder{i}", b) for i, b in enumerate(m.decoder.layers)]
    return {"blocks": blocks, "heads": []}
