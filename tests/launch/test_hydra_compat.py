"""The Hydra and hydra-ray-launcher internals of resnet_cifar.launch.hydra_compat, as read in
hydra-core 1.3.8 and hydra-ray-launcher 1.2.2: an upgrade that changes one fails here."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus

from resnet_cifar.launch.cluster_jobs import failed_result, job_error
from resnet_cifar.launch.hydra_compat import drop_ray_launcher_schema, failed_job_error


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


def test_ray_plugins_schema_is_dropped_from_the_config_store() -> None:
    ray_plugin_config = pytest.importorskip("hydra_plugins.hydra_ray_launcher._config")
    from hydra.core.plugins import Plugins

    store = ConfigStore.instance()
    # The plugin stores hydra/launcher=ray when its module is imported.
    assert re.search(r'group="hydra/launcher",\s*name="ray",', inspect.getsource(ray_plugin_config))
    # Hydra's plugin discovery imports every plugin module, the project's (which drops it) included.
    Plugins.instance()
    assert "ray.yaml" not in store.list("hydra/launcher")
    store.store(group="hydra/launcher", name="ray", node={"stand_in": True})  # as the plugin's import does
    assert "ray.yaml" in store.list("hydra/launcher")
    drop_ray_launcher_schema()
    assert "ray.yaml" not in store.list("hydra/launcher")
    assert "ray_aws.yaml" in store.list("hydra/launcher"), "only that one schema is dropped"
