"""``bioplaus train --pipeline N``: the blocks of a local rule's net trained as N Ray actors.

The driver is an ordinary :class:`~bioplaus.train.Trainer` (the same data,
schedule, checkpoints, evaluation, logs and signals) whose step is handed to
the stages instead of run in place. For every batch it submits one
``Stage.step`` task to each stage, the first fed the batch, each next one
fed the previous stage's result (an ``ObjectRef``: the activations and the
labels go from stage to stage through Ray's object store, never through
the driver). Ray runs the tasks one caller submits to one actor in the
order they were submitted, so stage s trains on batch t after its own
updates for batches 0..t-1, as the sequential loop does, while stage s-1
already works on batch t+1. At most ``window`` batches are in flight: the
driver waits for the oldest batch's reports before it submits a new one
(back-pressure; the reports are the step's statistics, summed exactly as
the sequential loop sums them, in the same order).

A checkpoint or an evaluation first collects every in-flight report, then
asks every stage for its arrays (each answers after the steps submitted
before, so all parts are of the same step) and writes them, through
:meth:`Trainer.save`, as one checkpoint in the format of ``bioplaus train``
(one atomic file). Such a checkpoint resumes sequentially, and a sequential
one resumes pipelined.
"""
from __future__ import annotations

from bioplaus import backend, optim
from bioplaus.pipeline.split import PipelineError, balanced_split, block_flops, describe_split
from bioplaus.rules.registry import get_rule
from bioplaus.train import Trainer, TrainingDiverged


def check_pipelinable(cfg, log_alignment: int = 0) -> None:
    """Refuse, with the reason, what cannot be pipelined."""
    rule = get_rule(cfg.rule)
    if rule.family == "global":
        raise PipelineError(
            f"--pipeline: {cfg.rule} cannot be pipelined: it is a global rule, whose blocks "
            "update on a batch only after the whole net's forward of that batch (an error from "
            "the output layer or a signal sent to every block at once), so no block can move "
            "on to the next batch before the blocks above it (backward locking). Pipelining needs "
            "a rule whose updates stay inside each block: pred, sim, predsim, pred-bio, "
            "sim-bio, predsim-bio or frc-*")
    if cfg.layerwise_epochs:
        raise PipelineError("--pipeline with --layerwise-epochs: one block trains at a time, "
                            "so there is nothing to run in parallel; train it without --pipeline")
    if log_alignment:
        raise PipelineError("--pipeline with --log-alignment: the alignment is measured with "
                            "the whole net in one process; train without --pipeline")


class PipelineTrainer(Trainer):
    """A :class:`~bioplaus.train.Trainer` whose blocks train in ``stages`` Ray actors.

    Ray must be started (:func:`bioplaus.sweep.start_ray`) before :meth:`run`.
    ``cpus_per_stage``: CPUs each actor holds (and its BLAS threads, at least
    one); default the cluster's CPUs shared out. ``window``: batches in flight
    at most (default 2 x stages).
    """

    def __init__(self, cfg, out_dir, *, stages: int, cpus_per_stage: float | None = None,
                 window: int | None = None, **kw):
        check_pipelinable(cfg, kw.get("log_alignment", 0))
        super().__init__(cfg, out_dir, **kw)
        try:
            self.costs = block_flops(self.model, cfg.batch_size)
            self.bounds = balanced_split(self.costs, int(stages))
        except BaseException:
            self._lock.release()
            raise
        self.n_stages = int(stages)
        self.cpus_per_stage = cpus_per_stage
        self.window = int(window or 2 * self.n_stages)
        if self.window < 1:
            raise PipelineError(f"the pipeline's window must be at least 1 batch, got {window}")
        self._actors = None
        self._inflight = []  # per submitted batch: (n, step, epoch, batch, [report refs])
        self._synced_step = self.step  # the driver's copy of the arrays is of this step
        self.sent_bytes = 0  # activation and label bytes sent between stages

    def split_description(self) -> str:
        return (f"pipeline: {self.n_stages} stages, split by a step's FLOPs (batch "
                f"{self.cfg.batch_size}):\n" + describe_split(self.model, self.bounds, self.costs))

    # ------------------------------------------------------------ the stages
    def start_stages(self) -> None:
        """Start one actor per stage with its arrays (a fresh run's, or the resumed checkpoint's)."""
        if self._actors is not None:
            return
        from bioplaus.pipeline.actors import StageActors
        from bioplaus.pipeline.stage import stage_arrays

        nb = len(self.model.spec.blocks)
        arrays = [stage_arrays(self.model, self.states, lo, hi, hi == nb) for lo, hi in self.bounds]
        self._actors = StageActors(self.cfg.to_dict(), self.data.input_shape,
                                   self.data.num_classes, self.bounds, arrays,
                                   cpus_per_stage=self.cpus_per_stage)

    def stop_stages(self) -> None:
        if self._actors is not None:
            self._actors.stop()
        self._actors = None
        self._inflight = []

    def run(self) -> dict:
        from bioplaus.pipeline.actors import StageDied

        self.start_stages()
        try:
            return super().run()
        except StageDied as exc:
            raise StageDied(f"{exc} at step {self.step}: the run stopped. {self.kept_checkpoint()}; "
                            "`--resume` continues from it, with or without --pipeline") from None
        finally:
            self.stop_stages()

    # ------------------------------------------------------------ the step
    def _train_batch(self, xb, yb, lr) -> None:
        """Submit the batch through the stages; wait while ``window`` batches are in flight."""
        reports = self._actors.submit((xb, yb), self.step, lr)
        self._inflight.append((int(xb.shape[0]), self.step, self.epoch, self.batch, reports))
        while len(self._inflight) >= self.window:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        """The oldest batch's reports, handed to the trainer's statistics (read_stats
        sums them and runs the divergence guards as for a sequential step)."""
        n, step, epoch, batch, reports = self._inflight.pop(0)
        rows = []
        for rep in self._actors.get(reports):
            self.sent_bytes += rep["sent_bytes"]
            rows.extend(rep["rows"])
        self._pending.append((step, epoch, batch, n, rows))

    def drain(self) -> None:
        """Collect every in-flight batch's reports (and read them: the guards run)."""
        while self._inflight:
            self._collect_oldest()
        self.read_stats()

    def gather(self) -> None:
        """The stages' arrays into the driver's model and optimizer states (same step for all)."""
        self.drain()
        if self._actors is None or self._synced_step == self.step:
            return
        xp, dtype = self.xp, self.dtype
        for st in self._actors.states():
            for k, v in st["params"].items():
                self.model.params[k][...] = backend.to_device(v, xp, dtype)
            for k, v in st["buffers"].items():
                self.model.buffers[k] = backend.to_device(v, xp, dtype)
            for g, arrs in st["optim"].items():
                self.states[g] = optim.load_state_arrays(arrs, xp)
        self._synced_step = self.step

    def save(self) -> None:
        self.gather()
        super().save()

    def _evaluate(self) -> dict:
        self.gather()
        return super()._evaluate()

    def timing(self) -> list[dict]:
        """Each stage's busy seconds and steps since the last call."""
        return self._actors.timing()
