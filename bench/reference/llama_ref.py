#!/usr/bin/env python3
"""Independent PyTorch-eager reference for Hugging Face LLaMA-family causal LMs.

Re-implements the math of transformers' LlamaForCausalLM, MistralForCausalLM
and Qwen2ForCausalLM on the "eager" attention path, without depending on
transformers.  It is used

  * by tests, to check another implementation's logits, loss and training
    numerics against a plain PyTorch computation, and
  * by benchmarks, as the "PyTorch eager" baseline of a training step.

Works with torch 1.13 and torch 2.x.  Only torch, numpy (optional) and
safetensors are used; when the safetensors package is missing a small
pure-Python reader of the (very simple) safetensors format is used instead.

Public API
----------
  read_config(model_dir) -> dict
  LlamaRefConfig(config_dict)                  normalised configuration
  LlamaForCausalLM(cfg, dtype, device)         nn.Module with HF parameter names
  load_model(model_dir, dtype=torch.float32, device='cpu') -> model
  random_model(config_dict, seed=0, dtype=torch.float32, device='cpu') -> model
  causal_lm_loss(logits, labels) -> scalar tensor
  make_train_step(model, trainable_names, lr=1e-4, weight_decay=0.0,
                  max_grad_norm=1.0) -> step(ids, labels) -> float

CLI (JSON on stdout only; errors on stderr with a non-zero exit status)
---------------------------------------------------------------------
  python llama_ref.py logits MODEL_DIR IDS_JSON [--device DEV]
  python llama_ref.py train  MODEL_DIR SPEC_JSON [--device DEV]
  python llama_ref.py generate MODEL_DIR SPEC_JSON [--device DEV]
See the sub-command functions below for the JSON formats.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


def parse_dtype(name):
    if isinstance(name, torch.dtype):
        return name
    if name is None:
        return torch.float32
    key = str(name).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ValueError("unsupported dtype %r" % (name,))
    return _DTYPES[key]


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), "r") as f:
        return json.load(f)


class LlamaRefConfig(object):
    """Normalised view of a config.json, with transformers' defaults applied."""

    def __init__(self, c):
        c = dict(c)
        self.raw = c
        self.model_type = c.get("model_type", "llama")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError("unsupported model_type %r (expected one of %s)"
                             % (self.model_type, ", ".join(SUPPORTED_MODEL_TYPES)))
        mt = self.model_type

        self.vocab_size = int(c["vocab_size"])
        self.hidden_size = int(c["hidden_size"])
        self.intermediate_size = int(c["intermediate_size"])
        self.num_hidden_layers = int(c["num_hidden_layers"])
        self.num_attention_heads = int(c["num_attention_heads"])
        kv = c.get("num_key_value_heads")
        self.num_key_value_heads = int(kv) if kv is not None else self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        hd = c.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        eps = c.get("rms_norm_eps")
        self.rms_norm_eps = float(eps) if eps is not None else 1e-6
        self.hidden_act = c.get("hidden_act") or "silu"
        self.tie_word_embeddings = bool(c.get("tie_word_embeddings", False))
        self.initializer_range = float(c.get("initializer_range") or 0.02)
        self.attention_dropout = float(c.get("attention_dropout") or 0.0)
        self.pad_token_id = c.get("pad_token_id")

        # Biases: llama has configurable attention/mlp biases (o_proj follows
        # attention_bias); qwen2 always has q/k/v biases and no o/mlp biases;
        # mistral has none.
        if mt == "llama":
            ab = bool(c.get("attention_bias", False))
            self.qkv_bias, self.o_bias = ab, ab
            self.mlp_bias = bool(c.get("mlp_bias", False))
        elif mt == "qwen2":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
        else:
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False

        # RoPE.  The newer `rope_parameters` dict (transformers v5) carries
        # rope_theta and the scaling fields; it takes precedence over the older
        # top-level rope_theta + rope_scaling.
        rp = c.get("rope_parameters")
        if isinstance(rp, dict) and rp:
            rope = dict(rp)
            theta = rope.get("rope_theta", c.get("rope_theta"))
        else:
            rope = dict(c.get("rope_scaling") or {})
            theta = c.get("rope_theta")
        self.rope_theta = float(theta) if theta is not None else 10000.0
        self.rope_type = rope.get("rope_type", rope.get("type")) or "default"
        if self.rope_type not in ("default", "linear", "llama3"):
            raise NotImplementedError("rope type %r is not implemented" % self.rope_type)
        self.rope = rope

        # Sliding window, per layer (None = full causal attention).
        self.layer_windows = self._layer_windows(c)

    def _layer_windows(self, c):
        n, mt = self.num_hidden_layers, self.model_type
        if mt == "qwen2":
            # Qwen2Config drops sliding_window when use_sliding_window is off.
            use = bool(c.get("use_sliding_window", False))
            sw = c.get("sliding_window", 4096) if use else None
        elif mt == "mistral":
            # MistralConfig's default sliding_window is 4096 when the key is absent.
            sw = c.get("sliding_window", 4096)
        else:
            sw = c.get("sliding_window")
        sw = int(sw) if sw is not None else None

        layer_types = c.get("layer_types")
        if layer_types is not None:
            if len(layer_types) != n:
                raise ValueError("layer_types has %d entries for %d layers" % (len(layer_types), n))
            return [sw if t == "sliding_attention" else None for t in layer_types]
        if mt == "mistral":
            return [sw] * n
        if mt == "qwen2" and sw is not None:
            mwl = int(c.get("max_window_layers", 28))
            return [sw if i >= mwl else None for i in range(n)]
        return [None] * n


def compute_inv_freq(cfg, device=None):
    """Rotary inverse frequencies (float32), as transformers' rope init functions."""
    dim = cfg.head_dim
    # Default: 1 / theta^(2i/d); arange in int64 then float, exactly as HF does
    # (it affects the last bits of the exponent).
    inv_freq = 1.0 / (cfg.rope_theta ** (
        torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim))
    r = cfg.rope
    if cfg.rope_type == "linear":
        inv_freq = inv_freq / float(r["factor"])
    elif cfg.rope_type == "llama3":
        # transformers' _compute_llama3_parameters: frequencies whose wavelength
        # is longer than the original context get divided by `factor`, short
        # ones are kept, and the band in between is linearly interpolated in
        # 1/wavelength ("smooth_factor").
        factor = float(r["factor"])
        low_freq_factor = float(r["low_freq_factor"])
        high_freq_factor = float(r["high_freq_factor"])
        old_context_len = float(r["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    return inv_freq


# ---------------------------------------------------------------------------
# Modules (attribute names mirror transformers so state_dict keys match)
# ---------------------------------------------------------------------------
#
# Mixed precision note: make_train_step may keep trainable parameters in
# float32 while the rest of the model is bf16/fp16 ("master weights").  Every
# forward therefore casts its weights to the activation dtype first.  When all
# parameters share the activation dtype (the normal case) these casts are
# no-ops and the math is exactly transformers'.


def _linear(x, layer):
    w = layer.weight.to(x.dtype)
    b = layer.bias.to(x.dtype) if layer.bias is not None else None
    return F.linear(x, w, b)


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps, dtype=None, device=None):
        super(LlamaRMSNorm, self).__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=dtype, device=device))
        self.variance_epsilon = eps

    def forward(self, x):
        # Normalise in float32, cast back to the input dtype *before* scaling
        # by the weight (HF order; it matters for bf16/fp16).
        input_dtype = x.dtype
        h = x.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight.to(input_dtype) * h.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    # cos/sin: [B, T, D] -> [B, 1, T, D] to broadcast over heads.
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def repeat_kv(x, n_rep):
    """[B, KV, T, D] -> [B, KV*n_rep, T, D]; query head h uses kv head h // n_rep."""
    if n_rep == 1:
        return x
    b, kvh, t, d = x.shape
    x = x[:, :, None, :, :].expand(b, kvh, n_rep, t, d)
    return x.reshape(b, kvh * n_rep, t, d)


class LlamaAttention(nn.Module):
    def __init__(self, cfg, layer_idx, dtype=None, device=None):
        super(LlamaAttention, self).__init__()
        self.layer_idx = layer_idx
        self.head_dim = cfg.head_dim
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim ** -0.5
        self.attention_dropout = cfg.attention_dropout
        self.sliding_window = cfg.layer_windows[layer_idx]
        h, d = cfg.hidden_size, self.head_dim
        fk = dict(dtype=dtype, device=device)
        self.q_proj = nn.Linear(h, self.num_heads * d, bias=cfg.qkv_bias, **fk)
        self.k_proj = nn.Linear(h, self.num_kv_heads * d, bias=cfg.qkv_bias, **fk)
        self.v_proj = nn.Linear(h, self.num_kv_heads * d, bias=cfg.qkv_bias, **fk)
        self.o_proj = nn.Linear(self.num_heads * d, h, bias=cfg.o_bias, **fk)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        shape = (b, t, -1, self.head_dim)
        q = _linear(x, self.q_proj).view(shape).transpose(1, 2)
        k = _linear(x, self.k_proj).view(shape).transpose(1, 2)
        v = _linear(x, self.v_proj).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)

        k = repeat_kv(k, self.num_key_value_groups)
        v = repeat_kv(v, self.num_key_value_groups)
        # Multiply by head_dim**-0.5 as transformers >= 4.48 does (older releases
        # divided by sqrt(head_dim), which differs in the last bit unless
        # head_dim is a power of 4).
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        scores = scores + additive_mask(t, self.sliding_window, scores.dtype, scores.device)
        # Softmax in float32, then back to the activation dtype (HF eager path).
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        probs = F.dropout(probs, p=self.attention_dropout, training=self.training)
        out = torch.matmul(probs, v)
        out = out.transpose(1, 2).contiguous().reshape(b, t, -1)
        return _linear(out, self.o_proj)


def additive_mask(t, sliding_window, dtype, device):
    """[1, 1, T, T] mask: 0 where query i may see key j, finfo(dtype).min elsewhere.

    Allowed iff j <= i and (no window or i - j < sliding_window).  Using the
    dtype's most negative finite value (not -inf) mirrors transformers; after
    adding it, exp() underflows to exactly 0 in the float32 softmax.
    """
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None, :]
    allowed = j <= i
    if sliding_window is not None:
        allowed = allowed & ((i - j) < sliding_window)
    mask = torch.zeros((t, t), dtype=dtype, device=device)
    mask = mask.masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None, :, :]


_ACTS = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class LlamaMLP(nn.Module):
    def __init__(self, cfg, dtype=None, device=None):
        super(LlamaMLP, self).__init__()
        h, i, bias = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        fk = dict(dtype=dtype, device=device)
        self.gate_proj = nn.Linear(h, i, bias=bias, **fk)
        self.up_proj = nn.Linear(h, i, bias=bias, **fk)
        self.down_proj = nn.Linear(i, h, bias=bias, **fk)
        if cfg.hidden_act not in _ACTS:
            raise NotImplementedError("hidden_act %r is not implemented" % cfg.hidden_act)
        self.act_fn = _ACTS[cfg.hidden_act]

    def forward(self, x):
        return _linear(self.act_fn(_linear(x, self.gate_proj)) * _linear(x, self.up_proj), self.down_proj)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg, layer_idx, dtype=None, device=None):
        super(LlamaDecoderLayer, self).__init__()
        fk = dict(dtype=dtype, device=device)
        self.self_attn = LlamaAttention(cfg, layer_idx, **fk)
        self.mlp = LlamaMLP(cfg, **fk)
        self.input_layernorm = LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **fk)
        self.post_attention_layernorm = LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **fk)

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


def _padding_idx(cfg):
    # transformers passes config.pad_token_id as nn.Embedding's padding_idx:
    # that row receives no gradient (and is zeroed at init).
    p = cfg.pad_token_id
    if p is None:
        return None
    p = int(p)
    if -cfg.vocab_size <= p < cfg.vocab_size:
        return p % cfg.vocab_size
    return None


class LlamaModel(nn.Module):
    def __init__(self, cfg, dtype=None, device=None):
        super(LlamaModel, self).__init__()
        self.cfg = cfg
        self.padding_idx = _padding_idx(cfg)
        fk = dict(dtype=dtype, device=device)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, self.padding_idx, **fk)
        self.layers = nn.ModuleList(
            [LlamaDecoderLayer(cfg, i, **fk) for i in range(cfg.num_hidden_layers)])
        self.norm = LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **fk)
        # inv_freq is deliberately not a buffer: a buffer would be cast along
        # with the model (e.g. to bf16) and lose precision; HF keeps it fp32.
        self._inv_freq = {}

    def rotary(self, b, t, dtype, device):
        key = str(device)
        if key not in self._inv_freq:
            self._inv_freq[key] = compute_inv_freq(self.cfg, device)
        inv_freq = self._inv_freq[key]
        pos = torch.arange(t, device=device)[None, :].expand(b, t)
        # Same formulation as LlamaRotaryEmbedding.forward, in float32.
        inv_freq_expanded = inv_freq[None, :, None].float().expand(b, -1, 1)
        pos_expanded = pos[:, None, :].float()
        freqs = torch.matmul(inv_freq_expanded, pos_expanded).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, input_ids, compute_dtype):
        # Gathering then casting == casting then gathering, and is cheaper.
        x = F.embedding(input_ids, self.embed_tokens.weight, self.padding_idx).to(compute_dtype)
        b, t = input_ids.shape
        cos, sin = self.rotary(b, t, x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    """state_dict keys: model.embed_tokens.weight, model.layers.{i}...., model.norm.weight,
    and lm_head.weight unless tie_word_embeddings (then embed_tokens is reused)."""

    def __init__(self, cfg, dtype=torch.float32, device="cpu"):
        super(LlamaForCausalLM, self).__init__()
        if isinstance(cfg, dict):
            cfg = LlamaRefConfig(cfg)
        self.cfg = cfg
        # Activation dtype; fixed at construction so that upcasting trainable
        # parameters to float32 does not change the forward math.
        self.compute_dtype = dtype
        self.model = LlamaModel(cfg, dtype=dtype, device=device)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype, device=device)
        else:
            self.lm_head = None

    def resolve_parameter(self, name):
        """Parameter by HF name; lm_head.weight maps to embed_tokens when tied."""
        if name == "lm_head.weight" and self.lm_head is None:
            name = "model.embed_tokens.weight"
        params = dict(self.named_parameters())
        if name not in params:
            raise KeyError("no parameter named %r" % name)
        return name, params[name]

    def forward(self, input_ids, labels=None):
        """Returns (logits [B,T,V] in the compute dtype, loss or None)."""
        h = self.model(input_ids, self.compute_dtype)
        w = self.lm_head.weight if self.lm_head is not None else self.model.embed_tokens.weight
        logits = F.linear(h, w.to(h.dtype))
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return logits, loss


def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss: float32 logits, position t predicts label
    t+1, mean cross entropy over labels != -100.

    Equivalent to cross_entropy(logits[:, :-1], labels[:, 1:]); written the way
    current transformers does it (labels padded with -100 and shifted, logits
    left whole) so that the float32 reduction order, and hence the last bit of
    the loss, matches it too."""
    logits = logits.float()
    labels = F.pad(labels.to(logits.device), (0, 1), value=IGNORE_INDEX)
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shift_labels,
                           ignore_index=IGNORE_INDEX, reduction="mean")


# ---------------------------------------------------------------------------
# Construction and loading
# ---------------------------------------------------------------------------

def _empty_model(cfg, dtype, device):
    """Model with uninitialised storage (avoids nn.Linear's default init cost)."""
    model = LlamaForCausalLM(cfg, dtype=dtype, device="meta")
    model = model.to_empty(device=device)
    return model


def random_model(config_dict, seed=0, dtype=torch.float32, device="cpu"):
    """Random weights initialised like transformers' _init_weights:
    Linear/Embedding weights ~ N(0, initializer_range), biases 0, norm weights 1,
    the padding_idx embedding row 0.  Draws are made on the CPU in float32 from a
    seeded generator, in named_parameters order, so they are device-independent."""
    cfg = config_dict if isinstance(config_dict, LlamaRefConfig) else LlamaRefConfig(config_dict)
    dtype = parse_dtype(dtype)
    model = _empty_model(cfg, dtype, device)
    gen = torch.Generator().manual_seed(int(seed))
    std = cfg.initializer_range
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                w = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=gen)
                if name == "model.embed_tokens.weight" and model.model.padding_idx is not None:
                    w[model.model.padding_idx].zero_()
                p.copy_(w)
    return model


_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def _read_safetensors_fallback(path):
    """Minimal reader for the safetensors format (8-byte LE header length,
    JSON header, raw little-endian tensor bytes), used only when the
    safetensors package is unavailable (e.g. Debian's system Python)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        buf = bytearray(data[base + start: base + end])
        if len(buf) == 0:
            t = torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt)
        out[name] = t.reshape(info["shape"])
    return out


def load_safetensors(path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        return _read_safetensors_fallback(path)
    return load_file(path)


def _weight_files(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return [single]
    if os.path.exists(index):
        with open(index, "r") as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(model_dir, s) for s in sorted(set(weight_map.values()))]
    raise FileNotFoundError("no model.safetensors or model.safetensors.index.json in %s" % model_dir)


def load_model(model_dir, dtype=torch.float32, device="cpu"):
    """Build the model from config.json and load its safetensors weights (single
    file or sharded via the index), cast to `dtype`.  Keys ending in
    rotary_emb.inv_freq are ignored, as is lm_head.weight when embeddings are
    tied; any other missing/unexpected key or shape mismatch is an error."""
    dtype = parse_dtype(dtype)
    cfg = LlamaRefConfig(read_config(model_dir))
    model = _empty_model(cfg, dtype, device)
    targets = model.state_dict(keep_vars=True)
    seen, unexpected, bad_shape = set(), [], []
    with torch.no_grad():
        # Shard by shard so peak memory is one shard plus the model.
        for path in _weight_files(model_dir):
            tensors = load_safetensors(path)
            for key, t in tensors.items():
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                if key == "lm_head.weight" and cfg.tie_word_embeddings:
                    continue
                if key not in targets:
                    unexpected.append(key)
                    continue
                p = targets[key]
                if tuple(p.shape) != tuple(t.shape):
                    bad_shape.append("%s: checkpoint %s vs model %s" % (key, tuple(t.shape), tuple(p.shape)))
                    continue
                p.copy_(t.to(device=p.device, dtype=p.dtype))
                seen.add(key)
            del tensors
    missing = sorted(set(targets) - seen)
    if missing or unexpected or bad_shape:
        raise RuntimeError("checkpoint does not match model: missing=%s unexpected=%s shape=%s"
                           % (missing, sorted(unexpected), bad_shape))
    return model


# ---------------------------------------------------------------------------
# Training step (PyTorch eager baseline)
# ---------------------------------------------------------------------------

def _no_decay(name):
    # transformers' Trainer does not decay biases or normalisation weights
    # (LlamaRMSNorm is in its layer-norm list); embeddings and lm_head decay.
    # (input_layernorm, post_attention_layernorm, model.norm all end in "norm.weight").
    return name.endswith(".bias") or name.endswith("norm.weight")


def make_train_step(model, trainable_names, lr=1e-4, weight_decay=0.0, max_grad_norm=1.0):
    """Freeze everything except `trainable_names` (HF names; lm_head.weight means
    embed_tokens when tied), keep those in float32 (upcast if the model is
    lower precision; forward still computes in the model's dtype), and return
    step(ids, labels) -> float loss doing forward, loss, backward, optional
    grad-norm clipping, AdamW step and zero_grad(set_to_none=True)."""
    for p in model.parameters():
        p.requires_grad_(False)
    resolved = []
    for n in trainable_names:
        name, p = model.resolve_parameter(n)
        if name not in [r[0] for r in resolved]:
            resolved.append((name, p))
    if not resolved:
        raise ValueError("no trainable parameters")
    for _, p in resolved:
        if p.dtype != torch.float32:
            p.data = p.data.float()
        p.requires_grad_(True)

    decay = [p for n, p in resolved if not _no_decay(n)]
    no_decay = [p for n, p in resolved if _no_decay(n)]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=float(lr), betas=(0.9, 0.999), eps=1e-8)
    params = [p for _, p in resolved]
    device = next(model.parameters()).device

    def step(ids, labels):
        model.train()
        ids = torch.as_tensor(ids, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        _, loss = model(ids, labels)
        loss.backward()
        if max_grad_norm is not None and max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, float(max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach().item())

    step.optimizer = optimizer
    step.params = resolved
    return step


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def _finite_or_none(x):
    return x if math.isfinite(x) else None


def cmd_logits(args):
    """IDS_JSON: {"ids": [[...]], "labels": [[...]]?, "dtype": "float32"?}
    stdout: {"shape": [B,T,V], "logits": [flat row-major floats], "loss": float|null}
    (loss uses labels if given, else ids; null if not finite)."""
    with open(args.ids_json, "r") as f:
        spec = json.load(f)
    dtype = parse_dtype(spec.get("dtype", "float32"))
    model = load_model(args.model_dir, dtype=dtype, device=args.device)
    model.eval()
    ids = torch.tensor(spec["ids"], dtype=torch.long, device=args.device)
    labels = spec.get("labels")
    labels = ids if labels is None else torch.tensor(labels, dtype=torch.long, device=args.device)
    if labels.shape != ids.shape:
        raise ValueError("labels shape %s != ids shape %s" % (tuple(labels.shape), tuple(ids.shape)))
    with torch.no_grad():
        logits, loss = model(ids, labels)
    flat = logits.float().cpu().reshape(-1).tolist()
    out = {"shape": list(logits.shape), "logits": flat, "loss": _finite_or_none(float(loss.item()))}
    return out


def cmd_train(args):
    """SPEC_JSON: {"trainable": [names], "steps": N, "lr": x, "weight_decay": y,
    "max_grad_norm": z, "batches": [{"ids": [[..]], "labels": [[..]]?}, ...],
    "dtype": "float32"?}; batches are used in order, cycling when steps > len.
    stdout: {"losses": [float|null, ...]}."""
    with open(args.spec_json, "r") as f:
        spec = json.load(f)
    dtype = parse_dtype(spec.get("dtype", "float32"))
    model = load_model(args.model_dir, dtype=dtype, device=args.device)
    step = make_train_step(
        model, spec["trainable"],
        lr=spec.get("lr", 1e-4),
        weight_decay=spec.get("weight_decay", 0.0),
        max_grad_norm=spec.get("max_grad_norm", 1.0))
    batches = spec["batches"]
    if not batches:
        raise ValueError("no batches")
    n = int(spec.get("steps", len(batches)))
    losses = []
    for i in range(n):
        b = batches[i % len(batches)]
        labels = b.get("labels")
        losses.append(_finite_or_none(step(b["ids"], b["ids"] if labels is None else labels)))
    return {"losses": losses}


# ---------------------------------------------------------------------------
# Generation with a key/value cache (as transformers' DynamicCache + greedy)
# ---------------------------------------------------------------------------

def new_kv_cache(model):
    n = len(model.model.layers)
    return {"length": 0, "k": [None] * n, "v": [None] * n}


@torch.no_grad()
def forward_cached(model, ids, cache):
    """Feeds ids [1, T] at positions cache["length"].. and returns the float32
    logits [V] of the last one.  Keys and values of every position are kept
    (concatenated per step, as DynamicCache does); queries see keys j <= i and,
    on sliding-window layers, i - j < window."""
    m = model.model
    past = cache["length"]
    t = ids.shape[1]
    x = F.embedding(ids, m.embed_tokens.weight, m.padding_idx).to(model.compute_dtype)
    cos, sin = m.rotary(1, past + t, x.dtype, x.device)
    cos, sin = cos[:, past:], sin[:, past:]
    qpos = torch.arange(past, past + t, device=x.device)[:, None]
    kpos = torch.arange(past + t, device=x.device)[None, :]
    for li, layer in enumerate(m.layers):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        shape = (1, t, -1, a.head_dim)
        q = _linear(h, a.q_proj).view(shape).transpose(1, 2)
        k = _linear(h, a.k_proj).view(shape).transpose(1, 2)
        v = _linear(h, a.v_proj).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache["k"][li] is not None:
            k = torch.cat([cache["k"][li], k], dim=2)
            v = torch.cat([cache["v"][li], v], dim=2)
        cache["k"][li], cache["v"][li] = k, v
        kk = repeat_kv(k, a.num_key_value_groups)
        vv = repeat_kv(v, a.num_key_value_groups)
        scores = torch.matmul(q, kk.transpose(2, 3)) * a.scaling
        allowed = kpos <= qpos
        if a.sliding_window is not None:
            allowed = allowed & ((qpos - kpos) < a.sliding_window)
        if t > 1 or a.sliding_window is not None:
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, vv).transpose(1, 2).contiguous().reshape(1, t, -1)
        x = x + _linear(out, a.o_proj)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    cache["length"] = past + t
    hidden = m.norm(x[:, -1:])
    w = model.lm_head.weight if model.lm_head is not None else m.embed_tokens.weight
    return F.linear(hidden, w.to(hidden.dtype))[0, -1].float()


def greedy_generate(model, prompt, max_new_tokens, use_cache=True, device="cpu"):
    """Greedy decoding of max_new_tokens tokens (no stop token).  Returns
    (ids, prefill_seconds, decode_seconds); with use_cache=False every step
    recomputes the whole sequence (the cache-free check of the cached loop)."""
    import time
    ids = list(prompt)
    out = []
    sync = (lambda: torch.cuda.synchronize()) if str(device).startswith("cuda") else (lambda: None)
    with torch.no_grad():
        cache = new_kv_cache(model)
        t0 = time.perf_counter()
        if use_cache:
            logits = forward_cached(model, torch.tensor([ids], device=device), cache)
        else:
            logits = model(torch.tensor([ids], device=device))[0][0, -1].float()
        token = int(torch.argmax(logits).item())
        sync()
        t1 = time.perf_counter()
        out.append(token)
        while len(out) < max_new_tokens:
            if use_cache:
                logits = forward_cached(model, torch.tensor([[token]], device=device), cache)
            else:
                logits = model(torch.tensor([ids + out], device=device))[0][0, -1].float()
            token = int(torch.argmax(logits).item())
            out.append(token)
        sync()
        t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


def cmd_generate(args):
    """SPEC_JSON: {"prompts": [[ids], ...], "max_new_tokens": N, "dtype": "float32"?,
    "use_cache": true?, "repeats": 1?, "threads": 0?}
    stdout: {"outputs": [[ids], ...], "prefill_s": [..], "decode_s": [..]}
    (times per prompt: the fastest of `repeats` runs)."""
    with open(args.spec_json, "r") as f:
        spec = json.load(f)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    model = load_model(args.model_dir, dtype=parse_dtype(spec.get("dtype", "float32")), device=args.device)
    model.eval()
    outputs, prefill, decode = [], [], []
    for prompt in spec["prompts"]:
        best = None
        for _ in range(int(spec.get("repeats", 1))):
            ids, p, d = greedy_generate(model, prompt, int(spec["max_new_tokens"]),
                                        use_cache=spec.get("use_cache", True), device=args.device)
            if best is None or p + d < best[1] + best[2]:
                best = (ids, p, d)
        outputs.append(best[0])
        prefill.append(best[1])
        decode.append(best[2])
    return {"outputs": outputs, "prefill_s": prefill, "decode_s": decode}


def build_parser():
    ap = argparse.ArgumentParser(description="PyTorch-eager reference for HF LLaMA/Mistral/Qwen2")
    sub = ap.add_subparsers(dest="command")
    p = sub.add_parser("logits", help="logits and loss for token ids")
    p.add_argument("model_dir")
    p.add_argument("ids_json")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_logits)
    p = sub.add_parser("train", help="run training steps and report losses")
    p.add_argument("model_dir")
    p.add_argument("spec_json")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("generate", help="greedy generation with a KV cache, timed")
    p.add_argument("model_dir")
    p.add_argument("spec_json")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_generate)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if getattr(args, "func", None) is None:
        ap.print_usage(sys.stderr)
        return 2
    try:
        out = args.func(args)
    except Exception as e:  # report on stderr, keep stdout for JSON only
        sys.stderr.write("llama_ref: %s: %s\n" % (type(e).__name__, e))
        return 1
    sys.stdout.write(json.dumps(out, allow_nan=False))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
