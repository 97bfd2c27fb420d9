"""Images/s of the ImageNet input pipeline against the bare JPEG decode + crop + resize (issue 18).

Not a test. Writes a synthetic ImageNet-like set itself: ``--images`` JPEGs (quality 90) of
random smooth content plus noise, sizes drawn around ImageNet's mean (~400x350), stored by TFDS
as ``imagenet2012`` array_record shards, the layout ``ebsp_jax.data`` reads. Then times, side by
side (round robin, ``--repeats`` rounds, medians):

* ``bare``: for every record's JPEG bytes (read beforehand, outside the timing): PIL decode, a
  random-resized crop box (one generator per image, as the pipeline draws them), PIL's bilinear
  crop + resize to 224x224 and flip, or the center crop (evaluation), the uint8 array; one image
  at a time, no pipeline;
* ``pipeline_<w>w``: one epoch of ``ebsp_jax.data.get_dataset('imagenet', ...)`` with
  ``num_threads=w`` (``--data_workers``), batches of ``--batch``: shuffled indices,
  array_record reads, the same decode and crops, batching, normalization to float32, grain's
  threads;
* ``pipeline_1w_uint8`` (``--uint8``): the same with ``normalize=False``, uint8 batches for
  normalization on the accelerator.

Both clocks are recorded per sample: wall time (images/s) and this process's CPU time (all
threads; less disturbed by other processes on a shared machine). ``wall_ratio`` is the
pipeline's wall time per image over the bare one's; ``cpu_ratio`` the same for CPU time. The
goal of issue 18: the pipeline costs at most 1.25x the bare work per image.

Usage::

    python -m benchmarks.input_pipeline --output=benchmarks/input_pipeline.json
    python -m benchmarks.input_pipeline --images=64 --repeats=2 --output=/tmp/ip.json  # smoke
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import PIL.Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import write_json  # noqa: E402
from ebsp_jax import data  # noqa: E402
from ebsp_jax.data import augment as aug  # noqa: E402

SIZE = 224


def synthetic_jpegs(n: int, seed: int = 0) -> List[bytes]:
  """``n`` JPEGs (quality 90) of random smooth colour fields plus noise, about 400x350 pixels
  (heights 280..420, widths 330..500)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    h, w = int(rng.integers(280, 421)), int(rng.integers(330, 501))
    coarse = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(PIL.Image.fromarray(coarse).resize((w, h), PIL.Image.Resampling.BICUBIC))
    img = np.clip(smooth.astype(np.int16) + rng.integers(-24, 25, (h, w, 3)), 0, 255)
    buf = io.BytesIO()
    PIL.Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
  return out


def write_imagenet_like(data_dir: str, jpegs: List[bytes]) -> str:
  """Stores ``jpegs`` (both splits) as a prepared TFDS ``imagenet2012`` (array_record, the JPEG
  bytes as they are); returns the version directory."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  with tfds.core.registered.skip_registration():

    class Synthetic(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version("5.1.0")

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=1000)}))

      def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(), "validation": self._generate_examples()}

      def _generate_examples(self):
        for i, jpeg in enumerate(jpegs):
          yield i, {"image": io.BytesIO(jpeg), "label": i % 1000}

    Synthetic.name = "imagenet2012"
    Synthetic(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data.find_prepared("imagenet2012", data_dir, "train")


def stored_jpegs(data_dir: str, split: str) -> List[bytes]:
  """The JPEG bytes as stored in the split (TFDS image decoding skipped)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  vdir = data.find_prepared("imagenet2012", data_dir, split)
  src = tfds.builder_from_directory(vdir).as_data_source(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  return [bytes(r["image"]) for r in src.__getitems__(list(range(len(src))))]


def bare(jpegs: List[bytes], train: bool, seed: int = 0) -> Callable[[], int]:
  """One pass of decode + crop + resize (+ flip) over ``jpegs``, image by image, in PIL: the
  crop box drawn as the pipeline draws it (``augment``'s box functions, one generator per
  image), the same bilinear resize call, the flip, the uint8 array of the result."""
  def run() -> int:
    rng = np.random.default_rng(seed)
    for jpeg in jpegs:
      with PIL.Image.open(io.BytesIO(jpeg)) as im:
        im.load()
        if train:
          r = np.random.default_rng(int(rng.integers(2**62)))
          box = aug.random_resized_crop_box(im.height, im.width, r)
          flip = r.random() < 0.5
        else:
          box, flip = aug.center_crop_box(im.height, im.width), False
        out = im.resize((SIZE, SIZE), PIL.Image.Resampling.BILINEAR, box=box)
        if flip:
          out = out.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
        out = np.asarray(out)
      assert out.shape == (SIZE, SIZE, 3)
    return len(jpegs)
  return run


def pipeline(data_dir: str, workers: int, batch: int, train: bool, normalize: bool = True
             ) -> Callable[[], int]:
  """One epoch of the ImageNet pipeline with ``workers`` threads (the dataset opened once,
  outside the timing, as a run opens it once per phase); returns the images read."""
  kw = {} if normalize else {"normalize": False}   # (older trees lack the argument)
  ds = data.get_dataset("imagenet", split="train" if train else "test", data_dir=data_dir,
                        batch_size=batch, augment=train, shuffle=train, num_epochs=1,
                        drop_remainder=False, num_threads=workers, **kw)

  def run() -> int:
    n = 0
    for b in ds:
      n += len(b["label"])
    assert n == ds.num_examples
    return n
  return run


def time_both_clocks(fns: Dict[str, Callable[[], int]], repeats: int
                     ) -> Dict[str, Dict[str, float]]:
  """Per fn: median wall and CPU seconds per image over ``repeats`` round-robin rounds (one
  warm-up call each first)."""
  for fn in fns.values():
    fn()
  samples: Dict[str, List[Tuple[float, float]]] = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      w0, c0 = time.perf_counter(), time.process_time()
      n = fn()
      samples[k].append(((time.perf_counter() - w0) / n, (time.process_time() - c0) / n))
  return {k: {"wall_s_per_image": statistics.median(w for w, _ in v),
              "cpu_s_per_image": statistics.median(c for _, c in v),
              "wall_samples": [w for w, _ in v], "cpu_samples": [c for _, c in v]}
          for k, v in samples.items()}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--output", required=True, help="JSON file for the figures")
  ap.add_argument("--images", type=int, default=512, help="synthetic JPEGs in the set")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--workers", default="1,2", help="comma-separated --data_workers values")
  ap.add_argument("--repeats", type=int, default=7, help="round-robin rounds (medians)")
  ap.add_argument("--modes", default="train,eval", help="train (random-resized crop + flip), "
                                                       "eval (center crop)")
  ap.add_argument("--uint8", action="store_true",
                  help="also time the pipeline (1 worker) without host normalization")
  ap.add_argument("--data_dir", default=None,
                  help="where to write the set (default: a temporary directory, removed after)")
  args = ap.parse_args(argv)
  workers = [int(w) for w in args.workers.split(",")]
  modes = args.modes.split(",")
  if args.images < args.batch or args.repeats < 1 or any(w < 0 for w in workers) or not (
      set(modes) <= {"train", "eval"}):
    ap.error("need --images >= --batch, --repeats >= 1, --workers >= 0, --modes in train,eval")
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir or tmp
    t0 = time.perf_counter()
    jpegs = synthetic_jpegs(args.images)
    write_imagenet_like(data_dir, jpegs)
    print(f"wrote {len(jpegs)} JPEGs, mean {np.mean([len(j) for j in jpegs]) / 1e3:.1f} kB, "
          f"in {time.perf_counter() - t0:.1f} s to {data_dir}", flush=True)
    results = {}
    for mode in modes:
      train = mode == "train"
      fns = {"bare": bare(stored_jpegs(data_dir, "train" if train else "validation"), train)}
      for w in workers:
        fns[f"pipeline_{w}w"] = pipeline(data_dir, w, args.batch, train)
      if args.uint8:
        fns["pipeline_1w_uint8"] = pipeline(data_dir, 1, args.batch, train, normalize=False)
      timed = time_both_clocks(fns, args.repeats)
      b = timed["bare"]
      for k, v in timed.items():
        v["images_per_s"] = 1.0 / v["wall_s_per_image"]
        v["wall_ratio"] = v["wall_s_per_image"] / b["wall_s_per_image"]
        v["cpu_ratio"] = v["cpu_s_per_image"] / b["cpu_s_per_image"]
        print(f"{mode:5s} {k:12s} {v['images_per_s']:7.1f} img/s  "
              f"cpu {1e3 * v['cpu_s_per_image']:6.2f} ms/img  wall ratio {v['wall_ratio']:.3f}  "
              f"cpu ratio {v['cpu_ratio']:.3f}", flush=True)
      results[mode] = timed
  sizes = [PIL.Image.open(io.BytesIO(j)).size for j in jpegs]
  write_json(args.output, dict(
      benchmark="input_pipeline", images=args.images, batch=args.batch, repeats=args.repeats,
      image_size=SIZE, mean_jpeg_kb=float(np.mean([len(j) for j in jpegs]) / 1e3),
      mean_width=float(np.mean([s[0] for s in sizes])),
      mean_height=float(np.mean([s[1] for s in sizes])),
      cpu_count=os.cpu_count(), goal="pipeline <= 1.25x bare per image", results=results))
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
