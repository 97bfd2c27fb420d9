"""EBSP on CIFAR-10: float training -> ADMM QAT -> projection + fine-tuning -> evaluation.

    python experiments/cifar10.py --flagfile=experiments/configs/cifar10.flags --workdir=runs/cifar10

Flags: `python experiments/cifar10.py --help`; the pipeline is in ebsp_jax/train/trainer.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from ebsp_jax.train import flags as train_flags  # noqa: E402

train_flags.define_flags(model="resnet20")
flags.adopt_module_key_flags(train_flags)  # --help lists them

if __name__ == "__main__":
  train_flags.main("cifar10")
