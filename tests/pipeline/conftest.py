"""One local Ray (two CPUs, as the CI machine) for every pipeline test."""
import pytest


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray")
    from bioplaus import sweep as sw

    if ray.is_initialized():
        ray.shutdown()
    sw.start_ray(num_cpus=2)
    yield ray
    if ray.is_initialized():
        ray.shutdown()
