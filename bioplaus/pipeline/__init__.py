"""Block-parallel training of local rules: each run of blocks a Ray actor (a pipeline stage).

:mod:`~bioplaus.pipeline.split` chooses the stages (contiguous blocks,
balanced by a step's FLOPs), :mod:`~bioplaus.pipeline.stage` is one stage
(its blocks' arrays and their training), :mod:`~bioplaus.pipeline.trainer`
the driver (``bioplaus train --pipeline N``). docs/pipeline.md says what is
equal to the sequential run and how it scales. Ray is optional
(``pip install 'bioplaus[cluster]'``) and imported only where a stage starts.
"""
from bioplaus.pipeline.split import PipelineError, balanced_split, block_flops, submodel

__all__ = ["PipelineError", "balanced_split", "block_flops", "submodel"]
