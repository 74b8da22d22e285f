"""Batch prediction beyond one machine: the same Reader, run by an actor pool on Ray Data.

``predict_with_ray`` reads and validates the questions with the data stage (the rules, ids and
errors of ``spanqa predict``), hands them to Ray Data in chunks of ``batch_size`` questions,
answers each chunk with ``map_batches`` over a fixed pool of ``num_actors`` actors that each load
the model once, and writes the answers with Ray's writers: JSON lines (each line exactly the line
``spanqa predict`` writes for that question) or Parquet. Chunks are the ones ``spanqa predict``
answers in one shared pass, so the forward passes, and the answers, are the same.

Ray runs locally by default, or on the cluster ``RAY_ADDRESS`` (or ``address``) points to; on a
cluster, ``out`` must be storage every node can write (a shared file system, or ``s3://...``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spanqa.core.errors import ConfigError, SpanQAError
from spanqa.core.io import atomic_folder, check_output_folder
from spanqa.jobs.predict import answer_lines
from spanqa.reading.options import AnswerOptions
from spanqa.reading.reader import Reader
from spanqa.runtime.options import LoadOptions
from spanqa.stages.data import DataSource

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow

__all__ = ["predict_with_ray", "RayRun", "OutputFormat", "RAY_EXTRA"]

logger = logging.getLogger(__name__)

OutputFormat = Literal["jsonl", "parquet"]
RAY_EXTRA = 'pip install "spanqa[ray]"'
MAX_CHUNKS_PER_BLOCK = 256


class MissingRayError(SpanQAError, ImportError):
    """Ray is an optional extra."""


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  # the Data library comes with the "data" extra of ray
    except ImportError as err:
        missing = f"no module {err.name!r}" if err.name else str(err)
        raise MissingRayError(f"--engine ray needs Ray Data ({missing}): {RAY_EXTRA}") from None
    return ray


class ReaderActor:
    """One model load per actor; answers whole chunks of questions, as ``spanqa predict`` does.

    Args:
        model: Model folder, alias or hub id.
        load: Device, backend, precision and windows per forward pass.
        options: How every question is answered.
        threads: PyTorch threads for this actor (its share of the node's cores).
    """

    def __init__(self, model: str, load: LoadOptions, options: AnswerOptions, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.reader = Reader.from_pretrained(model, load)
        self.options = options

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        lines: list[str] = []
        for ids, questions, contexts in zip(batch["ids"], batch["questions"], batch["contexts"]):
            lines.extend(answer_lines(self.reader, list(zip(ids, questions, contexts)), self.options))
        return {"line": lines}


def _jsonl_datasink(path: str) -> Any:
    """A Ray datasink writing the ``line`` column as JSON lines, byte for byte."""
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        def __init__(self, path: str) -> None:
            super().__init__(path, file_format="jsonl")

        def write_block_to_file(self, block: Any, file: Any) -> None:
            lines = block.to_arrow().column("line").to_pylist()
            file.write("".join(line + "\n" for line in lines).encode("utf-8"))

    return JsonLinesDatasink(path)


def prediction_schema() -> pyarrow.Schema:
    """The Parquet schema of a prediction record (fixed, so every file of a run agrees, empty answer lists included)."""
    import pyarrow as pa

    answer = pa.struct([("text", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64()), ("document", pa.int64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("score", pa.float64()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("is_impossible", pa.bool_()),
            ("no_answer_score", pa.float64()),
            ("no_answer_threshold", pa.float64()),
            ("answers", pa.list_(answer)),
        ]
    )


def _as_table(batch: Mapping[str, Any]) -> pyarrow.Table:
    import pyarrow as pa

    return pa.Table.from_pylist([json.loads(line) for line in batch["line"]], schema=prediction_schema())


def _cpus_per_actor(ray: Any, num_actors: int) -> int:
    """An equal share of the cluster's CPUs, but no more than its largest node has (an actor lives on one node)."""
    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    total = ray.cluster_resources().get("CPU", 1)
    return max(1, min(int(total // num_actors), int(max(nodes, default=1))))


def _check_out(out: str, overwrite: bool) -> None:
    if "://" in out:
        return  # object storage: Ray's writers handle it
    check_output_folder(out, overwrite, what="Ray prediction", error=ConfigError)


@dataclass(frozen=True)
class RayRun:
    """How a Ray prediction run is spread and written.

    Attributes:
        num_actors: Size of the actor pool (model copies).
        batch_size: Questions per Ray batch (answered in one shared pass, as ``spanqa predict``'s chunks).
        output_format: ``jsonl`` or ``parquet``.
        address: The Ray cluster (default: ``RAY_ADDRESS``, else a local Ray instance).
        overwrite: Replace a non-empty output folder.
    """

    num_actors: int = 1
    batch_size: int = 64
    output_format: OutputFormat = "jsonl"
    address: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.num_actors < 1 or self.batch_size < 1:
            raise ConfigError(f"--num-actors and --batch-size must be positive, got {self.num_actors} and {self.batch_size}")
        if self.output_format not in ("jsonl", "parquet"):
            raise ConfigError(f"unknown output format {self.output_format!r}; use jsonl or parquet")


def predict_with_ray(
    model: str,
    data: str | Path | DataSource,
    out: str | Path,
    options: AnswerOptions | None = None,
    load: LoadOptions | None = None,
    run: RayRun | None = None,
) -> int:
    """Answer every question of ``data`` on Ray Data; write a folder of JSON-lines or Parquet files.

    The files, read in name order, hold the questions in the data's order; the JSON lines are
    those ``spanqa predict`` writes.

    Args:
        model: Model folder, alias or hub id (every actor loads it; on a cluster, a path all nodes see or a hub id).
        data: Questions with contexts, in any layout :func:`~spanqa.stages.data.load_examples` reads.
        out: The output folder (local, shared, or a URI such as ``s3://bucket/run``).
        options: How every question is answered; default: the model's settings, one answer.
        load: How each actor loads the model (``batch_size``: windows per forward pass); device
            None: cuda (one GPU per actor) if the nodes have GPUs.
        run: Actors, questions per batch, output format, cluster address, overwrite.

    Returns:
        The number of questions answered.

    Raises:
        MissingRayError: Ray Data is not installed.
        ConfigError: a bad option or output folder (checked before Ray starts).
    """
    out, options, load, run = str(out), options or AnswerOptions(), load or LoadOptions(), run or RayRun()
    _check_out(out, run.overwrite)
    ray = _ray()
    examples = DataSource.of(data).load(require_answers=False).examples
    chunks = [examples[lo : lo + run.batch_size] for lo in range(0, len(examples), run.batch_size)]
    rows = [{"ids": [ex.id for ex in c], "questions": [ex.question for ex in c], "contexts": [ex.context for ex in c]} for c in chunks]
    address = run.address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        answered = _answered(ray, rows, model, options, load, run, address)
        if "://" in out:
            _write_dataset(answered, out, run.output_format)
        else:
            with atomic_folder(Path(out)) as staging:  # a failed run leaves no half-written folder
                _write_dataset(answered, str(staging.resolve()), run.output_format)
    finally:
        if started_here:
            ray.shutdown()
    return len(examples)


def _answered(ray: Any, rows: list[dict[str, Any]], model: str, options: AnswerOptions, load: LoadOptions, run: RayRun, address: str | None) -> Any:
    """The Ray dataset of answer lines (or Parquet records): ``rows`` mapped by a pool of :class:`ReaderActor`."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output files in the data's order
    context.enable_progress_bars = False
    gpus = ray.cluster_resources().get("GPU", 0)
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    logger.info("on %s: %d nodes, %g CPUs, %g GPUs", where, len(ray.nodes()), ray.cluster_resources().get("CPU", 0), gpus)
    use_gpu = load.device.startswith("cuda") if load.device else gpus > 0
    cpus = 1 if use_gpu else _cpus_per_actor(ray, run.num_actors)
    load = load.updated(device=load.device or ("cuda" if use_gpu else "cpu"))
    questions = sum(len(row["ids"]) for row in rows)
    logger.info(
        "answering %d questions in %d chunks with %d actors (%d CPUs%s each)", questions, len(rows), run.num_actors, cpus, ", 1 GPU" if use_gpu else ""
    )
    # Blocks are the unit of scheduling and of output files: a few per actor keeps them all busy,
    # and at most MAX_CHUNKS_PER_BLOCK chunks each bounds what one failed task has to redo.
    blocks = max(min(len(rows), 4 * run.num_actors), math.ceil(len(rows) / MAX_CHUNKS_PER_BLOCK), 1)
    answered = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        ReaderActor,
        fn_constructor_kwargs={"model": model, "load": load, "options": options, "threads": None if use_gpu else cpus},
        batch_size=1,  # one chunk of questions per call
        batch_format="pandas",
        concurrency=run.num_actors,
        num_cpus=cpus,
        num_gpus=1 if use_gpu else 0,
    )
    return answered.map_batches(_as_table, batch_format="pandas") if run.output_format == "parquet" else answered


def _write_dataset(dataset: Any, path: str, output_format: OutputFormat) -> None:
    if output_format == "parquet":
        dataset.write_parquet(path)
    else:
        dataset.write_datasink(_jsonl_datasink(path))
