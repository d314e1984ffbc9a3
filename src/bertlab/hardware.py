"""The one strategy bertlab adds: FSDP2 (pure data-parallel sharding) over Lightning's ModelParallelStrategy.

Lightning's `FSDPStrategy` wraps FSDP1, which refuses CPUs; ModelParallelStrategy hands the module a
device mesh and lets `BertTask.configure_model` call `fully_shard` per encoder layer. Its "auto" sizes
mean tensor parallel over a node's GPUs; for BERT we want every process in one data-parallel dimension.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy with data_parallel_size = world size and no tensor parallelism."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        # the world size is known only once processes exist: resolve "auto" to it, then build the mesh
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
