"""The frozen CACTI table matches a fresh run of the CACTI binary vendored by zigzag-dse."""

import pytest

from ebsp_jax.hw import cacti, tech

pytestmark = pytest.mark.skipif(cacti.cacti_binary() is None, reason="zigzag-dse not installed")


@pytest.mark.parametrize("size,device", [(256, "itrs-hp"), (8192, "itrs-hp"), (1024, "itrs-lop")])
def test_frozen_table_matches_cacti(size, device):
  r = cacti.run_cacti(size, 64, device)
  row = next(x for x in tech.CACTI_45NM if x[0] == size and x[2] == device)
  assert r.read_pj == pytest.approx(row[3], rel=0.01)
  assert r.write_pj == pytest.approx(row[4], rel=0.01)
  assert r.leakage_mw == pytest.approx(row[5], rel=0.01)
  assert r.area_mm2 == pytest.approx(row[6], rel=0.01)


def test_cacti_is_in_the_range_of_horowitz():
  # CACTI and Horowitz are independent sources; at 8 KB they agree within 2x.
  r = cacti.run_cacti(8192, 64, "itrs-hp")
  assert 0.5 < r.read_pj / tech.HOROWITZ_SRAM64_PJ[8192] < 2


def test_bad_device_and_impossible_config():
  with pytest.raises(ValueError):
    cacti.run_cacti(8192, 64, "itrs-xx")
  with pytest.raises(cacti.CactiUnavailable):
    cacti.run_cacti(64, 64, "itrs-hp")      # too small for a 64-bit port: CACTI finds nothing
