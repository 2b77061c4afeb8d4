"""The command line (every click call of the package lives under cli/)."""
import os

# Set before NumPy loads OpenBLAS, which reads it once. After its last product
# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) by default; on a machine
# with few cores they hold the cores that bioplaus's own host threads (im2col,
# col2im, the optimizer: bioplaus.fast.threads.run_shared) need next. 2^22 cycles
# (~1.6 ms) keeps them spinning between the products of one layer and frees the
# cores soon after. Measured on this project's 2-core CPU: vgg8b predsim step
# 6.49 -> 6.07 s (its Adam updates 49 -> 33 ms), mlp steps unchanged; shorter
# timeouts slowed the mlp steps. Speed only: results are the same. A value
# already in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "22")

import click  # noqa: E402

from bioplaus import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bioplaus")
def main():
    """bioplaus: biologically-plausible local learning in NumPy/CuPy."""
    from bioplaus.fast.memory import tune_host_allocator

    tune_host_allocator()


def _register():
    """Attach the sub-command groups that exist."""
    import importlib

    for mod, attr in [
        ("bioplaus.cli.bench", "bench"),
        ("bioplaus.cli.bench_steps", "steps"),
        ("bioplaus.cli.bench_steps", "traffic"),
        ("bioplaus.cli.bench_steps", "profile"),
        ("bioplaus.cli.data", "data"),
        ("bioplaus.cli.train", "train"),
        ("bioplaus.cli.train", "eval_cmd"),
        ("bioplaus.cli.info", "rules"),
        ("bioplaus.cli.info", "nets"),
        ("bioplaus.cli.oracle", "oracle"),
        ("bioplaus.cli.plot", "plot"),
        ("bioplaus.cli.results", "results"),
        ("bioplaus.cli.align", "align"),
        ("bioplaus.cli.sweep", "sweep"),
    ]:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        cmd = getattr(m, attr, None)
        if cmd is None:
            continue
        if mod == "bioplaus.cli.bench_steps" and "bench" in main.commands:
            main.commands["bench"].add_command(cmd)  # `bioplaus bench steps|traffic`
        elif mod != "bioplaus.cli.bench_steps":
            main.add_command(cmd)


_register()
