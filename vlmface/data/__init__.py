"""Dataset loading: task spec + source -> samples with canonical labels."""

from vlmface.data.samples import Sample, decode_image
from vlmface.data.sampling import stratified_limit
from vlmface.data.sources import LoadedData, load_samples

__all__ = ["LoadedData", "Sample", "decode_image", "load_samples", "stratified_limit"]
