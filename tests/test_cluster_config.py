"""cluster.yaml against Ray's own cluster-launcher validation, and the promises its comments make.

``validate_config`` is what ``ray up`` runs (on the file as written and after Ray fills in its
defaults); it rejects unknown keys, so a misspelt key fails here instead of at launch time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_validation(cluster):
    validate_config(copy.deepcopy(cluster))
    validate_config(prepare_config(copy.deepcopy(cluster)))


@pytest.mark.parametrize("misspell", ["top_level", "node_type", "docker"])
def test_a_misspelt_key_fails_validation(cluster, tmp_path, misspell):
    text = CLUSTER_YAML.read_text()
    replacements = {
        "top_level": ("\nmax_workers:", "\nmax_wrokers:"),
        "node_type": ("        min_workers: 0\n", "        min_wrokers: 0\n"),
        "docker": ("    head_image:", "    head_imgae:"),
    }
    old, new = replacements[misspell]
    assert old in text
    broken = tmp_path / "cluster.yaml"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(jsonschema.ValidationError, match="wrokers|imgae"):
        validate_config(yaml.safe_load(broken.read_text()))


def test_head_is_on_demand_and_gpu_workers_autoscale_from_zero(cluster):
    node_types = cluster["available_node_types"]
    head = node_types[cluster["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"]
    workers = {name: spec for name, spec in node_types.items() if name != cluster["head_node_type"]}
    assert len(workers) >= 2
    assert all(spec["min_workers"] == 0 for spec in workers.values())


def test_dashboard_is_not_public(cluster):
    opened = [rule.get("FromPort") for rule in cluster["provider"]["security_group"]["IpPermissions"]]
    assert 8265 not in opened and 10001 not in opened
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start


def test_results_storage_is_one_variable_on_every_node(cluster):
    """The searches read TCNVAE_STORAGE as their default --storage-path; the container of every node has it."""
    assert any(option.startswith("--env=TCNVAE_STORAGE=s3://") for option in cluster["docker"]["run_options"])
