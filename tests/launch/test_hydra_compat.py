"""The Hydra internals of resnet_cifar.launch.hydra_compat, as read in hydra-core 1.3.8: an
upgrade that changes one fails here."""

from __future__ import annotations

import dataclasses

import pytest
from hydra.core.utils import JobReturn, JobStatus

from resnet_cifar.launch.cluster_jobs import failed_result, job_error
from resnet_cifar.launch.hydra_compat import failed_job_error


def test_a_failed_jobs_error_is_read_without_raising(capsys: pytest.CaptureFixture) -> None:
    assert "_return_value" in {field.name for field in dataclasses.fields(JobReturn)}
    error = ValueError("optimizer.lr=-1: must be > 0")
    result = failed_result(["seed=1"], error)  # through the public return_value setter
    assert result.status == JobStatus.FAILED and result.overrides == ["seed=1"]
    assert failed_job_error(result) is error
    assert job_error(result) == "ValueError: optimizer.lr=-1: must be > 0"
    assert capsys.readouterr().err == ""
    # The public property raises the error and writes to stderr: why the launchers read the field.
    with pytest.raises(ValueError, match="must be > 0"):
        result.return_value  # noqa: B018
    assert "Error executing job with overrides: ['seed=1']" in capsys.readouterr().err
