#!/usr/bin/env python3
"""Write a tiny, randomly initialised Llama with its own BPE tokenizer and chat template.

Stand-alone on purpose: it imports only torch, tokenizers and transformers, so it runs with the
vLLM venv's python (tierkit.localvllm.tiny_model does that) and never downloads anything. The same
spec and seed give the same files.

usage: make_tiny_model.py OUT_DIR SPEC_JSON
SPEC_JSON keys: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, head_dim, max_position_embeddings, seed.
"""

from __future__ import annotations

import json
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# A role-tagged chat format; `add_generation_prompt` opens the assistant's turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# The tokenizer's training text: plain sentences about the lab's own subject.
TRAINING_TEXT = """\
A platform team describes what it wants to serve in one tier spec, and everything else follows.
The planner sizes the deployment: weights, the key and value cache, and the expected tokens per
second. Servers come from a provider; once SSH answers, Ansible installs the driver, the NCCL
library and the inference server, and a smoke test decides whether the deploy counts.
Decoding is bound by memory bandwidth, so a single stream runs at roughly the bandwidth divided
by the bytes of the weights. Tensor parallelism splits each layer across the GPUs of one server;
pipeline parallelism gives each GPU a slice of the layers instead. Without NVLink, pipeline
parallelism is often the better choice, because every tensor parallel step needs an all-reduce.
Two servers behind a virtual address keep serving when one of them fails. Keepalived moves the
address within a few seconds; HAProxy checks the health endpoint of each server and sends every
request to a server that answers. The smoke test streams many requests at once, measures the time
to the first token and the output rate, and compares both with what the planner expected.
The quick brown fox jumps over the lazy dog while the sleepy cat watches from the warm window.
Numbers matter here: one, two, three, four, eight, sixteen, thirty-two, sixty-four, one hundred
and twenty-eight, two hundred and fifty-six, five hundred and twelve, one thousand and twenty-four.
Questions and answers: What is the model? A tiny Llama. Where does it run? On the processor.
Why is it so small? So that tests finish quickly and still exercise the real server end to end.
"""


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer of exactly `vocab_size` tokens, trained on TRAINING_TEXT."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise SystemExit(
            f"tokenizer has {tokenizer.get_vocab_size()} tokens, wanted {vocab_size}: "
            "lengthen TRAINING_TEXT or lower vocab_size"
        )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return tokenizer


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir, spec = argv[1], json.loads(argv[2])
    torch.manual_seed(spec["seed"])

    raw = train_tokenizer(spec["vocab_size"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=spec["max_position_embeddings"], chat_template=CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=spec["vocab_size"],
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        head_dim=spec["head_dim"],
        max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=raw.token_to_id(BOS),
        eos_token_id=raw.token_to_id(EOS),
        pad_token_id=raw.token_to_id(PAD),
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
