"""The independent side of llamapro's GGUF tests, on the PyPI `gguf` package (numpy only).

  make-synthetic OUT.gguf       a tiny llama GGUF whose 2-D weights cycle through every ggml type llamapro reads,
                                random block bytes with sane f16 scales, written by gguf's GGUFWriter; plus a
                                small byte-level BPE vocabulary
  compare GGUF DIR              every tensor of DIR/model.safetensors (float32) equals gguf.quants.dequantize of
                                the GGUF tensor, with llama.cpp's q/k row permutation undone here, independently
  tokens GGUF DIR               tokenizer.json's vocabulary, merges and special tokens against the GGUF's lists
  encode GGUF                   stdin: JSON list of texts -> ids from a byte-level BPE written here from the GGUF's
                                tokens and merges with llama.cpp's split rules for its tokenizer.ggml.pre
  read-export GGUF              what gguf's reader sees in an exported file (metadata, tensors, q8_0 requantized)
Prints JSON.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file

TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.F16, Q.BF16, Q.F32]
BLOCK = {Q.Q4_0: (32, 18), Q.Q4_1: (32, 20), Q.Q5_0: (32, 22), Q.Q5_1: (32, 24), Q.Q8_0: (32, 34),
         Q.Q4_K: (256, 144), Q.Q5_K: (256, 176), Q.Q6_K: (256, 210)}
# Byte offsets of the f16 scales in each block: random bytes there could be inf/nan, so they get sane values.
SCALES = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}

HIDDEN, HEADS, KV_HEADS, INTER, LAYERS = 256, 4, 2, 512, 2


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def random_tensor(rng, qtype, rows, cols):
    if qtype == Q.F32:
        shape = (cols,) if rows == 1 else (rows, cols)
        return rng.standard_normal(shape).astype(np.float32), None
    if qtype == Q.F16:
        return rng.standard_normal((rows, cols)).astype(np.float16), None
    if qtype == Q.BF16:
        values = rng.standard_normal((rows, cols)).astype(np.float32)
        return quantize(values, Q.BF16), Q.BF16
    size, nbytes = BLOCK[qtype]
    blocks = rng.integers(0, 256, size=(rows, cols // size, nbytes), dtype=np.uint8)
    for at in SCALES[qtype]:
        scale = rng.uniform(-0.05, 0.05, size=(rows, cols // size)).astype(np.float16)
        blocks[:, :, at:at + 2] = scale.view(np.uint8).reshape(rows, cols // size, 2)
    return blocks.reshape(rows, -1), qtype


def make_synthetic(path):
    rng = np.random.default_rng(14)
    w = GGUFWriter(path, 'llama')
    w.add_name('synthetic')
    w.add_context_length(512)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(INTER)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    # A byte-level vocabulary: the 256 byte symbols, a few merges, two control tokens.
    from_bytes = bytes_to_unicode()
    tokens = [from_bytes[b] for b in range(256)]
    merges = ['Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ a']
    for m in merges:
        tokens.append(m.replace(' ', ''))
    tokens += ['<|im_start|>', '<|im_end|>']
    vocab = len(tokens)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre('smollm')
    w.add_token_list(tokens)
    w.add_token_types([1] * (vocab - 2) + [3, 3])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab - 2)
    w.add_eos_token_id(vocab - 1)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    k = 0

    def add(name, rows, cols, qtype=None):
        nonlocal k
        if qtype is None:
            qtype = TYPES[k % len(TYPES)]
            k += 1
        data, raw = random_tensor(rng, qtype, rows, cols)
        w.add_tensor(name, data, raw_dtype=raw)

    add('token_embd.weight', vocab, HIDDEN, Q.Q8_0)
    for i in range(LAYERS):
        p = f'blk.{i}.'
        add(p + 'attn_norm.weight', 1, HIDDEN, Q.F32)
        add(p + 'attn_q.weight', HIDDEN, HIDDEN)
        add(p + 'attn_k.weight', KV_HEADS * HIDDEN // HEADS, HIDDEN)
        add(p + 'attn_v.weight', KV_HEADS * HIDDEN // HEADS, HIDDEN)
        add(p + 'attn_output.weight', HIDDEN, HIDDEN)
        add(p + 'ffn_norm.weight', 1, HIDDEN, Q.F32)
        add(p + 'ffn_gate.weight', INTER, HIDDEN)
        add(p + 'ffn_up.weight', INTER, HIDDEN)
        add(p + 'ffn_down.weight', HIDDEN, INTER)
    add('output_norm.weight', 1, HIDDEN, Q.F32)
    add('output.weight', vocab, HIDDEN, Q.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {'types': sorted({TYPES[i % len(TYPES)].name for i in range(k)})}


HF_NAMES = {'attn_norm': 'input_layernorm', 'ffn_norm': 'post_attention_layernorm', 'attn_q': 'self_attn.q_proj',
            'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj', 'attn_output': 'self_attn.o_proj',
            'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj'}


def hf_name(name):
    parts = name.split('.')
    if parts[0] == 'blk':
        return f'model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.{parts[3]}'
    return {'token_embd': 'model.embed_tokens', 'output_norm': 'model.norm', 'output': 'lm_head'}[parts[0]] + '.' + parts[1]


def reverse_permute(w, n_head):
    # transformers' LlamaTensorProcessor._reverse_permute_weights
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def compare(gguf_path, out_dir):
    r = GGUFReader(gguf_path)
    heads, kv = int(field(r, 'llama.attention.head_count')), int(field(r, 'llama.attention.head_count_kv'))
    ours = load_file(out_dir + '/model.safetensors')
    rows, worst = [], 0.0
    for t in r.tensors:
        ref = dequantize(t.data, t.tensor_type).astype(np.float32)
        ref = ref.reshape([int(d) for d in reversed(t.shape)]) if len(t.shape) > 1 else ref.reshape(-1)
        if '.attn_q.' in t.name:
            ref = reverse_permute(ref, heads)
        elif '.attn_k.' in t.name:
            ref = reverse_permute(ref, kv)
        mine = ours[hf_name(t.name)]
        same_shape = list(mine.shape) == list(ref.shape)
        equal = bool(same_shape and np.array_equal(mine.view(np.uint32), ref.view(np.uint32)))
        diff = float(np.max(np.abs(mine.astype(np.float64) - ref))) if same_shape else float('inf')
        worst = max(worst, diff)
        rows.append({'name': t.name, 'type': t.tensor_type.name, 'bitEqual': equal, 'maxAbsDiff': diff})
    extra = sorted(set(ours) - {hf_name(t.name) for t in r.tensors})
    return {'tensors': rows, 'extra': extra, 'worst': worst}


def tokens(gguf_path, out_dir):
    r = GGUFReader(gguf_path)
    toks = field(r, 'tokenizer.ggml.tokens')
    types = field(r, 'tokenizer.ggml.token_type')
    merges = field(r, 'tokenizer.ggml.merges') or []
    tj = json.load(open(out_dir + '/tokenizer.json', encoding='utf-8'))
    vocab = tj['model']['vocab']
    by_id = [None] * len(toks)
    for tok, i in vocab.items():
        by_id[i] = tok
    json_merges = [m if isinstance(m, str) else ' '.join(m) for m in tj['model']['merges']]
    specials = sorted(a['id'] for a in tj['added_tokens'] if a['special'])
    cfg = json.load(open(out_dir + '/tokenizer_config.json', encoding='utf-8'))
    ids = {k: field(r, 'tokenizer.ggml.' + k) for k in ('bos_token_id', 'eos_token_id', 'padding_token_id', 'unknown_token_id')}
    return {
        'tokensEqual': by_id == list(toks),
        'mergesEqual': json_merges == list(merges),
        'count': len(toks),
        'mergeCount': len(merges),
        'specialsEqual': specials == [i for i, t in enumerate(types) if t == 3],
        'specialCount': len(specials),
        'bosEqual': ids['bos_token_id'] is None or cfg['bos_token'] == toks[ids['bos_token_id']],
        'eosEqual': ids['eos_token_id'] is None or cfg['eos_token'] == toks[ids['eos_token_id']],
        'templateEqual': cfg.get('chat_template') == field(r, 'tokenizer.chat_template'),
    }


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# llama.cpp's split rules (llama-vocab.cpp) per tokenizer.ggml.pre, applied one after the other.
GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"""
SPLITS = {'default': [GPT2], 'gpt2': [GPT2], 'smollm': [r'\p{N}', GPT2]}


def encode(gguf_path, texts):
    import regex
    r = GGUFReader(gguf_path)
    toks = list(field(r, 'tokenizer.ggml.tokens'))
    types = list(field(r, 'tokenizer.ggml.token_type'))
    ranks = {tuple(m.split(' ')): i for i, m in enumerate(field(r, 'tokenizer.ggml.merges'))}
    ids = {t: i for i, t in enumerate(toks)}
    pre = field(r, 'tokenizer.ggml.pre') or 'default'
    specials = sorted((t for t, ty in zip(toks, types) if ty == 3), key=len, reverse=True)
    special_re = regex.compile('|'.join(regex.escape(s) for s in specials)) if specials else None
    byte_map = bytes_to_unicode()

    def split(text):
        pieces = [text]
        for pattern in SPLITS[pre]:
            out = []
            for piece in pieces:
                # llama.cpp keeps the text between matches as pieces of their own
                pos = 0
                for m in regex.finditer(pattern, piece):
                    if m.start() > pos:
                        out.append(piece[pos:m.start()])
                    out.append(m.group())
                    pos = m.end()
                if pos < len(piece):
                    out.append(piece[pos:])
            pieces = out
        return pieces

    def bpe(word):
        parts = [byte_map[b] for b in word.encode('utf-8')]
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get((parts[i], parts[i + 1]), 1 << 62))
            if (parts[best], parts[best + 1]) not in ranks:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [ids[p] for p in parts]

    result = []
    for text in texts:
        out, pos = [], 0
        segments = []
        if special_re:
            for m in special_re.finditer(text):
                segments.append((text[pos:m.start()], False))
                segments.append((m.group(), True))
                pos = m.end()
        segments.append((text[pos:], False))
        for seg, special in segments:
            if special:
                out.append(ids[seg])
            elif seg:
                for word in split(seg):
                    out.extend(bpe(word))
        result.append(out)
    return result


def read_export(path, source_dir):
    r = GGUFReader(path)
    meta = {}
    for k in r.fields:
        if k.startswith('GGUF.') or k in ('tokenizer.ggml.tokens', 'tokenizer.ggml.merges', 'tokenizer.ggml.token_type', 'tokenizer.ggml.scores'):
            continue
        meta[k] = field(r, k)
    heads, kv = int(meta['llama.attention.head_count']), int(meta['llama.attention.head_count_kv'])
    src = load_file(source_dir + '/model.safetensors') if source_dir else None
    tensors = []
    for t in r.tensors:
        row = {'name': t.name, 'type': t.tensor_type.name, 'shape': [int(x) for x in t.shape]}
        if src is not None and t.tensor_type == Q.Q8_0:
            # The file's Q8_0 bytes against gguf's own quantizer run on the source weights, permuted as llama.cpp does.
            w = src[hf_name(t.name)].astype(np.float32)
            n = heads if '.attn_q.' in t.name else kv if '.attn_k.' in t.name else None
            if n:
                w = w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
            row['q8Equal'] = bool(np.array_equal(quantize(w, Q.Q8_0).reshape(-1), np.asarray(t.data).reshape(-1)))
        tensors.append(row)
    return {'metadata': meta, 'tensors': tensors, 'tokenCount': len(field(r, 'tokenizer.ggml.tokens') or [])}


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'make-synthetic':
        out = make_synthetic(sys.argv[2])
    elif cmd == 'compare':
        out = compare(sys.argv[2], sys.argv[3])
    elif cmd == 'tokens':
        out = tokens(sys.argv[2], sys.argv[3])
    elif cmd == 'encode':
        out = encode(sys.argv[2], json.load(sys.stdin))
    elif cmd == 'read-export':
        out = read_export(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(f'unknown command {cmd}')
    json.dump(out, sys.stdout, default=str)
