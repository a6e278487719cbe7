"""``rerank-batch``: rerank a file of queries and candidates offline, on Ray Data, with a model of
the service's configuration; writes a scored run that a second start with the same output resumes.

    rerank-batch ../shared/data/trec-dl20/candidates.jsonl --output runs/dl20 \\
        --config serve_config.yaml --backend minilm --trec
    rerank-batch bm25-top100.run --corpus corpus.jsonl --queries queries.jsonl --output runs/sf \\
        --config serve_config.yaml --backend minilm

Writes ``OUTPUT/parts/part-NNNNNN.parquet`` (``query_id, doc_id, score, raw_score, rank, model,
runtime``), ``OUTPUT/errors.jsonl`` (rows left out, with file, line and reason),
``OUTPUT/summary.json`` (also the last stdout line) and with ``--trec`` ``OUTPUT/run.trec``. Ray:
the cluster of ``--address`` or ``RAY_ADDRESS`` (set by ``ray job submit``), else a local one.
Exit status 1 when the input, the model, the output or the Ray address cannot be used, 2 on bad
usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rerank_batch.inputs import InputError
from rerank_batch.job import BatchJob, JobError, LocalConfig, run_batch
from rerank_core.cli import service_from_file
from rerank_core.config import LOCAL_TYPES, ConfigError, is_local_path, load_config, read_yaml


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-batch",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        # A flag in a manifest or a script is read as written, never as the start of another.
        allow_abbrev=False,
    )
    parser.add_argument("input", type=Path, help="JSONL or Parquet of query rows or pair rows, or a TREC run")
    parser.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl (INPUT is then a TREC run)")
    parser.add_argument("--queries", type=Path, help="BEIR queries.jsonl (INPUT is then a TREC run)")
    parser.add_argument("--output", type=Path, required=True, help="output folder; the same one resumes")
    model = parser.add_argument_group("model (as the service names it)")
    model.add_argument(
        "--config",
        type=Path,
        default=Path("serve_config.yaml"),
        help="serve_config.yaml, a service config, or one backend's section",
    )
    model.add_argument("--backend", help="backend name in --config (default: its only local backend)")
    pool = parser.add_argument_group("actor pool")
    pool.add_argument("--batch-pairs", type=int, default=2048, help="pairs a batch holds (whole queries)")
    pool.add_argument("--min-actors", type=int, default=1)
    pool.add_argument("--max-actors", type=int, default=1)
    pool.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of each actor (its threads)")
    pool.add_argument("--num-gpus", type=float, default=0.0, help="GPUs of each actor (0.5 shares one)")
    parser.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument("--trec", action="store_true", help="also write OUTPUT/run.trec")
    parser.add_argument("--tag", help="the run file's tag (default: the backend's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def backend_of(path: Path, name: str | None) -> tuple[str, LocalConfig]:
    """The backend ``name`` of a config file (a Serve config, a service config, or one backend's
    section: a mapping with ``type``); ``ConfigError`` when it is absent or not a local model."""
    data = read_yaml(path)
    if isinstance(data, dict) and "type" in data:
        name = name or path.stem
        service = load_config({"backends": {name: data}})
    else:
        service = service_from_file(path)
    local = [n for n, c in service.backends.items() if c.type in LOCAL_TYPES]
    if name is None:
        if len(local) != 1:
            raise ConfigError(
                f"{path} has {len(local)} local backends {sorted(local)}: name one with --backend"
            )
        name = local[0]
    if name not in service.backends:
        raise ConfigError(f"{path}: no backend {name!r} (it has {sorted(service.backends)})")
    config = service.backends[name]
    if config.type not in LOCAL_TYPES:
        raise ConfigError(
            f"backend {name!r} is an API backend ({config.type}): the batch job runs local models"
        )
    if is_local_path(config.model) and not Path(config.model).expanduser().is_dir():
        raise ConfigError(f"backend {name!r}: the model directory {config.model!r} does not exist")
    return name, config  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("batch_pairs", "min_actors", "max_actors"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.max_actors < args.min_actors:
        parser.error("--max-actors must be at least --min-actors")
    if args.num_cpus <= 0 or args.num_gpus < 0:
        parser.error("--num-cpus must be positive and --num-gpus not negative")
    try:
        name, config = backend_of(args.config, args.backend)
        job = BatchJob(
            input=args.input,
            output=args.output,
            backend=name,
            config=config,
            corpus=args.corpus,
            queries=args.queries,
            batch_pairs=args.batch_pairs,
            min_actors=args.min_actors,
            max_actors=args.max_actors,
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            strict=args.strict,
            trec=args.trec,
            tag=args.tag,
            progress=not args.no_progress,
            address=args.address,
        )
        summary = run_batch(job)
    except (ConfigError, InputError, JobError, ConnectionError) as exc:
        print(f"rerank-batch: {exc}", file=sys.stderr)
        return 1
    print(
        f"{summary['queries']} queries, {summary['pairs']} pairs ({summary['pairs_scored']} scored now, "
        f"{summary['resumed_queries']} queries done before), {summary['pairs_per_s'] or '-'} pairs/s, "
        f"{summary['errors']} rows in errors.jsonl -> {summary['output']}",
        file=sys.stderr,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
