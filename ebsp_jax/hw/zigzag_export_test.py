"""ZigZag export, and the cross-check of this model's energy against ZigZag 3.9.1.

Tolerance (documented in docs/hardware.md): with the same architecture, per-access energies
and mapping, total energy within 20% (observed: within 2-3% for Eyeriss and EBSP; the rest is
ZigZag's rounding of each transfer period up to whole memory words). With ZigZag's own
temporal-mapping search (LOMA) under the same spatial unrolling, this model's mapper must not
be worse than ZigZag's by more than 20%.
"""

import pytest
import yaml

from ebsp_jax.hw import arch, dataflow, workload, zigzag_export

TOLERANCE = 0.20


@pytest.fixture(scope="module")
def resnet18_layer():
  wl = workload.model_workload("resnet18", "imagenet")
  return next(l for l in wl.layers if l.name == "stage4_block1/conv2")   # 512x512x3x3 @ 7x7


def test_yaml_export_structure(tmp_path, resnet18_layer):
  acc = arch.build_accelerator("ebsp")
  cost = dataflow.best_mapping(resnet18_layer, acc, lpf_limit=3, refine_starts=1)
  paths = zigzag_export.write_zigzag_inputs(str(tmp_path), [resnet18_layer], acc, cost.mapping)
  wl = yaml.safe_load(open(paths["workload"]))
  assert wl[0]["loop_sizes"] == [1, 512, 1, 7, 7, 512, 3, 3]
  assert wl[0]["operand_precision"] == {"W": 6, "I": 8, "O": 32, "O_final": 8}
  hw = yaml.safe_load(open(paths["accelerator"]))
  assert hw["operational_array"]["sizes"] == list(acc.array)
  assert hw["memories"]["lut"]["served_dimensions"] == ["D2"]
  glb = hw["memories"]["glb"]
  assert glb["r_cost"] == pytest.approx(acc.level("glb").read_pj * 1024 / 64)
  mp = yaml.safe_load(open(paths["mapping"]))
  assert mp[0]["temporal_ordering"] == [[d, s] for d, s in cost.mapping.temporal]
  free = zigzag_export.mapping_to_zigzag(cost.mapping, acc, temporal=False)
  assert "temporal_ordering" not in free[0]


zz = pytest.mark.skipif(not zigzag_export.zigzag_available(), reason="zigzag-dse not installed")


@zz
@pytest.mark.parametrize("name", ["eyeriss", "ebsp"])
def test_energy_matches_zigzag_on_the_same_mapping(name, resnet18_layer):
  acc = arch.build_accelerator(name)
  cost = dataflow.best_mapping(resnet18_layer, acc, objective="energy", lpf_limit=3,
                               refine_starts=1)
  z = zigzag_export.run_zigzag(resnet18_layer, acc, cost.mapping)
  ours = cost.energy["total"] - cost.energy["leakage"]          # ZigZag has no leakage
  assert abs(ours / z["energy_pj"] - 1) < TOLERANCE, (ours, z)
  assert cost.energy["compute"] == pytest.approx(z["mac_energy_pj"], rel=1e-6)
  # Level by level too (where a level holds enough energy to matter).
  for lvl, e in z["mem_energy_by_level"].items():
    if e > 0.02 * z["energy_pj"]:
      assert abs(cost.level_energy[lvl] / e - 1) < TOLERANCE, (lvl, cost.level_energy[lvl], e)


@zz
def test_mapper_is_not_worse_than_zigzag_search(resnet18_layer):
  acc = arch.build_accelerator("ebsp")
  cost = dataflow.best_mapping(resnet18_layer, acc, objective="energy", lpf_limit=3,
                               refine_starts=1)
  z = zigzag_export.run_zigzag(resnet18_layer, acc, cost.mapping, temporal=False, lpf_limit=5)
  ours = cost.energy["total"] - cost.energy["leakage"]
  assert ours <= z["energy_pj"] * (1 + TOLERANCE), (ours, z["energy_pj"])
