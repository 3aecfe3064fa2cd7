"""The large-KV model of the serving benchmark: e2e's tiny model made wide in its KV heads only.

The tiny model's KV is 16 KiB a token (2 x 8 layers x 4 KV heads x 64 x 4 bytes), 30 MiB for
the 1920 tokens a 2001-token prompt loads from the pool: next to a prefill of about a second,
the store's share of a pool hit is too small to see. This model keeps the tiny model's width
(hidden 512) and depth (8 layers), so its projections stay cheap, and widens attention to
16 heads of 128 with as many KV heads (no grouping): 2 x 8 x 16 x 128 x 4 bytes = 128 KiB a
token, 16 MiB a 128-token block, 240 MiB for the 1920 loaded tokens (8x the tiny model). Same tokenizer, same
fixed seed, random weights (e2e/lib/model.py).

Usage: python bench/serving/wide_model.py OUT_DIR   (does nothing if OUT_DIR is complete)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e", "lib"))
import model  # noqa: E402

WIDE = dict(hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
            num_attention_heads=16, num_key_value_heads=16, head_dim=128)
STAMP = "serving-wide-v1"
KV_BYTES_PER_TOKEN = 2 * WIDE["num_hidden_layers"] * WIDE["num_key_value_heads"] * WIDE["head_dim"] * 4


if __name__ == "__main__":
    print(model.generate(sys.argv[1], stamp=STAMP, **WIDE))
