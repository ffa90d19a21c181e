"""Post-processing for every task: --largest, --fill-holes, --remove-small, nested labels kept nested."""

from segkit.postprocess.masks import MinSize, clean_mask, parse_min_size, postprocess_record
from segkit.postprocess.labels import split_labels

__all__ = ["MinSize", "clean_mask", "parse_min_size", "postprocess_record", "split_labels"]
