"""Generate the tiny Llama-architecture model used by the vLLM end-to-end tests.

No model hub is reachable, so the model is made here: random weights drawn
with a fixed seed (the same files on every machine), a word-level tokenizer
whose vocabulary is "<unk>", "<s>", "</s>" and the words w0..w{N-4}, and
the config files vLLM and transformers read. Prompts are built from those
words (see `prompt_words`), so a prompt of n words is n tokens plus BOS.

Dimensions: hidden 512, 8 layers, 8 heads of 64 (a head size vLLM's CPU
attention backend supports), 4 KV heads, MLP 1536, float32. Small enough that
the scenarios run quickly on 2 cores, big enough that a 2000-token prefill
costs a measurable time (about a second), which the pool-hit-versus-
recompute TTFT measurement needs. Weights are initialised with a wider
normal (std 0.2 instead of 0.02) so that logits are peaked and greedy
decoding has clear winners rather than near ties.

Usage: python e2e/lib/model.py OUT_DIR   (does nothing if OUT_DIR is complete)
"""

import json
import os
import random
import sys

VOCAB = 2048
STAMP = "e2e-model-v1"


def prompt_words(n, seed):
    """A deterministic prompt of n words from the model's vocabulary."""
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(VOCAB - 3)}" for _ in range(n))


# The tiny model's dimensions; generate(**dims) overrides some (bench/serving/wide_model.py).
DIMS = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
            num_attention_heads=8, num_key_value_heads=4, head_dim=64)


def generate(out_dir, stamp=STAMP, **dims):
    """The model under out_dir (nothing to do when its STAMP file says `stamp`)."""
    stamp_path = os.path.join(out_dir, "STAMP")
    if os.path.exists(stamp_path) and open(stamp_path).read().strip() == stamp:
        return out_dir
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    os.makedirs(out_dir, exist_ok=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(VOCAB - 3):
        vocab[f"w{i}"] = i + 3
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=4096,
    )
    fast.save_pretrained(out_dir)

    config = LlamaConfig(
        vocab_size=VOCAB,
        **dict(DIMS, **dims),
        max_position_embeddings=4096,
        initializer_range=0.2,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, f)
    with open(stamp_path, "w") as f:
        f.write(stamp + "\n")
    return out_dir


if __name__ == "__main__":
    print(generate(sys.argv[1]))
