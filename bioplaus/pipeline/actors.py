"""The stages as Ray actors, and the submission of batches through them.

:class:`StageActors` starts one :class:`~bioplaus.pipeline.stage.Stage`
actor per stage and submits a batch as one task per stage: the first task
is fed the batch, each next one the previous task's result (an
``ObjectRef``), so activations and labels go from stage to stage through
Ray's object store and never through the driver. Ray runs the tasks that
one caller submits to one actor in submission order, so every stage sees
the batches in order, each after its own updates for the batches before.
The caller bounds the batches in flight (back-pressure): see
:meth:`bioplaus.pipeline.trainer.PipelineTrainer._train_batch` and
:mod:`bioplaus.bench.pipeline`.
"""
from __future__ import annotations

from bioplaus.pipeline.split import PipelineError

INSTALL_HINT = "pip install 'bioplaus[cluster]'"


class StageDied(PipelineError):
    """A stage's actor (its process or node) died; the run stops."""


def require_ray():
    """The ``ray`` module, or a PipelineError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise PipelineError("--pipeline runs its stages as Ray actors, and Ray is not "
                            f"installed; install it with {INSTALL_HINT}") from None
    return ray


def stage_resources(ray, n_stages: int, device: str, cpus_per_stage: float | None):
    """``(num_cpus, num_gpus, blas_threads)`` of each stage's actor.

    CPUs: ``cpus_per_stage``, default the cluster's CPUs shared out (whole
    CPUs where there are at least as many as stages). GPUs (``device ==
    'gpu'``): one per stage, or an equal share of each where there are
    fewer GPUs than stages. BLAS threads: the whole CPUs held, at least one.
    """
    if cpus_per_stage is None:
        total = float(ray.cluster_resources().get("CPU", 1))
        cpus_per_stage = total // n_stages if total >= n_stages else total / n_stages
    if not cpus_per_stage > 0:
        raise PipelineError(f"--stage-cpus must be positive, got {cpus_per_stage}")
    gpus = 0
    if device == "gpu":
        have = float(ray.cluster_resources().get("GPU", 0))
        if not have:
            raise PipelineError(f"--pipeline {n_stages} --device gpu: the Ray cluster has no GPU")
        gpus = 1 if have >= n_stages else have / n_stages
    return float(cpus_per_stage), gpus, max(1, int(cpus_per_stage))


class StageActors:
    """One Ray actor per stage, started with its arrays.

    ``bounds``: ``[(lo, hi)]`` per stage (:func:`~bioplaus.pipeline.split.balanced_split`);
    ``arrays``: per stage, what :func:`~bioplaus.pipeline.stage.stage_arrays` gives.
    """

    def __init__(self, config: dict, input_shape, num_classes: int, bounds, arrays, *,
                 cpus_per_stage: float | None = None):
        from bioplaus.pipeline.stage import Stage
        from bioplaus.sweep import BLAS_ENV
        from bioplaus.runinfo import git_commit

        ray = self.ray = require_ray()
        if not ray.is_initialized():
            raise PipelineError("Ray is not started: call bioplaus.sweep.start_ray first")
        self.cpus, self.gpus, self.threads = stage_resources(ray, len(bounds), config["device"],
                                                             cpus_per_stage)
        env = {**{v: str(self.threads) for v in BLAS_ENV}, "BIOPLAUS_COMMIT": git_commit()}
        actor = ray.remote(Stage)
        nb = bounds[-1][1]
        self.actors = []
        try:
            for (lo, hi), arr in zip(bounds, arrays):
                self.actors.append(actor.options(
                    num_cpus=self.cpus, num_gpus=self.gpus, runtime_env={"env_vars": env},
                    max_restarts=0).remote(config, tuple(input_shape), int(num_classes), lo, hi,
                                           hi == nb, arr))
            self.timing()  # every actor is up (or its error raised) before the first batch
        except BaseException:
            self.stop()
            raise

    def submit(self, batch, step: int, lr: float) -> list:
        """Submit one batch (``(x, y)`` or an ObjectRef of it) through every stage;
        the stages' report refs, in stage order."""
        ref, reports = batch, []
        for a in self.actors:
            ref, rep = a.step.options(num_returns=2).remote(ref, int(step), float(lr))
            reports.append(rep)
        return reports

    def get(self, refs):
        """``ray.get``; a stage's exception is raised as itself, a dead actor as :class:`StageDied`."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except self.ray.exceptions.RayActorError as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StageDied(f"a pipeline stage's actor died ({why})") from None

    def states(self) -> list[dict]:
        """Every stage's arrays, each taken after the steps submitted before this call."""
        return self.get([a.state.remote() for a in self.actors])

    def timing(self) -> list[dict]:
        """Every stage's busy seconds and steps since the last call."""
        return self.get([a.timing.remote() for a in self.actors])

    def stop(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
