"""Input pipelines (grain, no TensorFlow) for Fashion-MNIST, MNIST, CIFAR-10 and ImageNet.

Usage::

    from ebsp_jax import data
    ds = data.get_dataset('cifar10', split='train', batch_size=128, seed=0, start_step=0)
    for batch in ds:            # {'image': float32 (B, 32, 32, 3), 'label': int32 (B,)}
        ...
    len(ds), ds.num_examples, ds.num_classes, ds.input_shape, ds.steps_per_epoch

Data are never downloaded: missing data raise a one-line FileNotFoundError saying where we
looked and how to prepare the data.
"""

from ebsp_jax.data.fashion_mnist import read_idx
from ebsp_jax.data.fashion_mnist import load as load_fashion_mnist
from ebsp_jax.data.pipeline import DATASETS, Dataset, DatasetSpec, get_dataset, get_spec
from ebsp_jax.data.tfds_source import default_tfds_dir, find_prepared

__all__ = [
    "DATASETS", "Dataset", "DatasetSpec", "default_tfds_dir", "find_prepared", "get_dataset",
    "get_spec", "load_fashion_mnist", "read_idx",
]
