import os

import pytest

from slurm_cluster import LocalSlurm, missing_tools


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip(f"SLURM tests need {', '.join(missing)} (Debian: slurmctld slurmd slurm-client munge; "
                    ".ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons as root")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()
