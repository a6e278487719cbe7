"""Train a cross-encoder in stages with sentence-transformers' ``CrossEncoderTrainer``, scoring the
dev queries with the evaluation metrics every few steps, keeping the best weights and stopping
early, on a shared step and wall-clock budget."""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from transformers import TrainerCallback

from rerank_tools.evaluation.loaders import EvalQuery, Qrels, Run
from rerank_tools.evaluation.metrics import evaluate_run
from rerank_tools.train.data import Pair

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder
    from transformers import TrainerControl, TrainerState, TrainingArguments

#: "mse": regress the labels (distillation of a teacher's scores); "listnet": cross-entropy of the
#: softmax of the model's scores over a query's list against the softmax of its labels (listwise
#: distillation: only the order within a query counts, not its offset); "bce": binary
#: cross-entropy on labels in [0, 1] (pointwise judgments); "lambda": LambdaLoss over each query's
#: judged list.
LossName = Literal["mse", "listnet", "bce", "lambda"]
#: Losses whose examples are a query's list of documents rather than one pair.
LIST_LOSSES = ("listnet", "lambda")


@dataclass(frozen=True, slots=True)
class Stage:
    """One training stage: its examples, its loss and how long it may run."""

    name: str
    pairs: list[Pair]
    loss: LossName
    epochs: float
    learning_rate: float
    #: Only the classification head (pooler and classifier) learns; the encoder stays frozen.
    head_only: bool = False


@dataclass(slots=True)
class Budget:
    """Limits shared by all stages: optimizer steps and wall-clock seconds from ``started``."""

    max_steps: int
    max_seconds: float
    started: float = field(default_factory=time.monotonic)
    steps_done: int = 0

    def seconds_left(self) -> float:
        return self.max_seconds - (time.monotonic() - self.started)


@dataclass(slots=True)
class DevTracker:
    """Dev nDCG@10 history and the best weights seen so far."""

    queries: list[EvalQuery]
    qrels: Qrels
    rel: int
    batch_size: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_ndcg: float = float("-inf")
    best_state: dict[str, Any] | None = None
    best_at: str = ""

    def evaluate(self, model: CrossEncoder) -> float:
        """Dev nDCG@10 of ``model`` reranking the dev queries' candidates."""
        run: Run = {}
        for q in self.queries:
            scores = model.predict(
                [(q.query, c.text) for c in q.candidates],
                batch_size=self.batch_size,
                show_progress_bar=False,
            )
            order = sorted(range(len(q.candidates)), key=lambda i: -float(scores[i]))
            run[q.qid] = [q.candidates[i].docid for i in order]
        return evaluate_run(run, self.qrels, self.rel)["ndcg@10"]

    def record(self, model: CrossEncoder, stage: str, step: int) -> bool:
        """Evaluate, log, and keep the weights when they are the best so far; True when they are."""
        ndcg = self.evaluate(model)
        self.history.append({"stage": stage, "step": step, "dev_ndcg@10": round(ndcg, 4)})
        print(f"rerank-train: {stage} step {step}: dev nDCG@10 {ndcg:.4f}", file=sys.stderr)
        if ndcg > self.best_ndcg:
            self.best_ndcg = ndcg
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            self.best_at = f"{stage}@{step}"
            return True
        return False


class _EarlyStopping(TrainerCallback):
    """Every ``every`` steps: a dev evaluation; stop after ``patience`` evaluations without a new
    best, or when the shared budget runs out."""

    def __init__(
        self, model: CrossEncoder, tracker: DevTracker, stage: str, every: int, patience: int, budget: Budget
    ) -> None:
        self.model = model
        self.tracker = tracker
        self.stage = stage
        self.every = every
        self.patience = patience
        self.budget = budget
        self.stale = 0
        self.stop_reason = "completed"

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        self.budget.steps_done += 1
        if state.global_step % self.every == 0:
            improved = self.tracker.record(self.model, self.stage, state.global_step)
            self.stale = 0 if improved else self.stale + 1
            if self.stale >= self.patience:
                self.stop_reason = "early_stopping"
                control.should_training_stop = True
        if self.budget.steps_done >= self.budget.max_steps:
            self.stop_reason = "max_steps"
            control.should_training_stop = True
        elif self.budget.seconds_left() <= 0:
            self.stop_reason = "max_time"
            control.should_training_stop = True
        return control


def _loss(model: CrossEncoder, name: LossName, list_size: int) -> Any:
    from sentence_transformers.cross_encoder import losses

    if name == "mse":
        return losses.MSELoss(model)
    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "listnet":
        return losses.ListNetLoss(model, mini_batch_size=list_size)
    return losses.LambdaLoss(model, mini_batch_size=list_size)


def _dataset(pairs: Sequence[Pair], loss: LossName, list_size: int) -> Any:
    """Pointwise rows (query, text, label), or for a listwise loss one row per query with its
    documents and labels in chunks of at most ``list_size`` (the pairs come shuffled, so each chunk
    is a random subset of the query's documents)."""
    from datasets import Dataset

    if loss not in LIST_LOSSES:
        return Dataset.from_dict(
            {
                "query": [p.query for p in pairs],
                "text": [p.text for p in pairs],
                "label": [p.label for p in pairs],
            }
        )
    grouped: dict[str, list[Pair]] = {}
    for p in pairs:
        grouped.setdefault(p.query, []).append(p)
    rows: dict[str, list[Any]] = {"query": [], "docs": [], "labels": []}
    for query, items in grouped.items():
        for start in range(0, len(items), list_size):
            chunk = items[start : start + list_size]
            rows["query"].append(query)
            rows["docs"].append([p.text for p in chunk])
            rows["labels"].append([p.label for p in chunk])
    return Dataset.from_dict(rows)


def _is_head(name: str) -> bool:
    """Whether parameter ``name`` of a sequence-classification model belongs to its head."""
    return name.startswith("classifier.") or ".pooler." in name or name.startswith("pooler.")


def run_stage(
    model: CrossEncoder,
    stage: Stage,
    tracker: DevTracker,
    budget: Budget,
    *,
    batch_size: int,
    list_size: int,
    eval_every: int,
    patience: int,
    seed: int,
    progress: bool,
    bf16: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on one stage until its epochs end, dev nDCG stops improving, or the budget
    runs out; then load the best weights seen so far (this stage or an earlier one). Returns the
    stage's summary (pairs, steps, seconds, why it stopped). ``bf16``: forward and backward passes
    under bfloat16 autocast (the weights and optimizer stay float32)."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    started = time.monotonic()
    stopper = _EarlyStopping(model, tracker, stage.name, eval_every, patience, budget)
    steps_left = budget.max_steps - budget.steps_done
    summary: dict[str, Any] = {"stage": stage.name, "loss": stage.loss, "pairs": len(stage.pairs)}
    if steps_left <= 0 or budget.seconds_left() <= 0 or not stage.pairs:
        return {**summary, "steps": 0, "seconds": 0.0, "stopped": "no budget left or no pairs"}
    frozen = [p for n, p in model.model.named_parameters() if stage.head_only and not _is_head(n)]
    for parameter in frozen:
        parameter.requires_grad_(False)
    summary["trained_parameters"] = sum(p.numel() for p in model.model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory(prefix="rerank-train-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=stage.epochs,
            per_device_train_batch_size=batch_size if stage.loss not in LIST_LOSSES else 1,
            learning_rate=stage.learning_rate,
            warmup_steps=0.1,  # a fraction of the stage's steps
            dataloader_pin_memory=model.device.type == "cuda",
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            eval_strategy="no",
            logging_steps=max(1, eval_every),
            report_to="none",
            disable_tqdm=not progress,
            dataloader_drop_last=False,
            bf16=bf16,
            use_cpu=model.device.type == "cpu",
        )
        trainer = CrossEncoderTrainer(
            model=model,
            args=args,
            train_dataset=_dataset(stage.pairs, stage.loss, list_size),
            loss=_loss(model, stage.loss, list_size),
            callbacks=[stopper],
        )
        result = trainer.train()
    for parameter in frozen:
        parameter.requires_grad_(True)
    if stopper.stop_reason == "completed" and result.global_step % eval_every != 0:
        tracker.record(model, stage.name, result.global_step)
    if tracker.best_state is not None:
        model.load_state_dict(tracker.best_state)
    return {
        **summary,
        "steps": result.global_step,
        "seconds": round(time.monotonic() - started, 1),
        "stopped": stopper.stop_reason,
        "train_loss": round(float(result.training_loss), 5),
    }
