"""The planner against published measurements: a reference table and the error on each row.

The table (YAML, `decode:` and `memory:` rows; tests/unit/data/planner_reference.yaml is tierkit's)
holds single-stream decode speeds and vLLM start-up KV-cache sizes, each with its source, engine and
settings. `errors()` sets the planner's estimate beside each measurement; bench/planner_fit.py
prints them and refits the planner's constants, and a unit test keeps them within bounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tierkit import catalog, planner

GIB = 1024**3


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    model: str
    quantization: catalog.Quantization
    gpu: str
    tensor_parallel: int = Field(1, ge=1, le=8)
    pipeline_parallel: int = Field(1, ge=1, le=8)
    engine: str
    settings: str
    source: str = Field(pattern=r"^https://")
    assumed: str | None = None

    @model_validator(mode="after")
    def _known_keys(self) -> _Row:
        if self.model not in catalog.MODELS:
            raise ValueError(catalog.unknown_key("model", "model", self.model, catalog.MODELS))
        if self.gpu not in catalog.GPUS:
            raise ValueError(catalog.unknown_key("GPU", "gpu", self.gpu, catalog.GPUS))
        return self


class DecodeRow(_Row):
    """A single-stream (concurrency 1) decode measurement."""

    input_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    tpot_ms: float = Field(gt=0)
    interconnect: Literal["nvlink", "pcie"] | None = Field(None, description="the TP group's link, when not the catalog's")


class MemoryRow(_Row):
    """The KV cache vLLM allocated at start-up: in GiB, or as its maximum-concurrency line."""

    utilization: float = Field(gt=0, le=1)
    kv_cache_gib: float | None = Field(None, gt=0)
    max_concurrency: float | None = Field(None, gt=0)
    tokens_per_request: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_measure(self) -> MemoryRow:
        by_line = self.max_concurrency is not None and self.tokens_per_request is not None
        if (self.kv_cache_gib is not None) == by_line:
            raise ValueError("give kv_cache_gib, or max_concurrency with tokens_per_request")
        return self


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decode: list[DecodeRow]
    memory: list[MemoryRow]


@dataclass(frozen=True)
class RowError:
    """One row: what was measured, what the planner says, and the relative error."""

    id: str
    kind: Literal["decode", "memory"]
    unit: str
    measured: float
    predicted: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


def load(path: Path) -> Reference:
    return Reference.model_validate(yaml.safe_load(path.read_text()))


def mean_context(row: DecodeRow) -> int:
    """The context a decode run averages: its prompt plus half its output."""
    return row.input_tokens + row.output_tokens // 2


def decode_error(row: DecodeRow) -> RowError:
    model, gpu = catalog.MODELS[row.model], catalog.GPUS[row.gpu]
    nvlink = None if row.interconnect is None else row.interconnect == "nvlink"
    predicted = planner.decode_tok_s(
        model, row.quantization, gpu, row.tensor_parallel, row.pipeline_parallel, mean_context(row), nvlink=nvlink
    )
    return RowError(row.id, "decode", "tok/s", 1000.0 / row.tpot_ms, predicted)


def memory_error(row: MemoryRow) -> RowError:
    model, gpu = catalog.MODELS[row.model], catalog.GPUS[row.gpu]
    if row.kv_cache_gib is not None:
        measured = row.kv_cache_gib
    else:
        assert row.max_concurrency is not None and row.tokens_per_request is not None
        measured = row.max_concurrency * row.tokens_per_request * model.kv_bytes_per_token(planner.KV_DTYPE_BYTES) / GIB
    predicted = planner.kv_cache_gib(
        model, row.quantization, gpu, row.tensor_parallel, row.pipeline_parallel, row.utilization
    )
    return RowError(row.id, "memory", "KV GiB", measured, predicted)


def errors(reference: Reference) -> list[RowError]:
    return [decode_error(r) for r in reference.decode] + [memory_error(r) for r in reference.memory]


def summary(rows: list[RowError]) -> tuple[float, float]:
    """Median and worst absolute relative error."""
    magnitudes = [abs(r.error) for r in rows]
    return statistics.median(magnitudes), max(magnitudes)
