"""Top-1 error in percent, the number the paper reports."""

from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy


def top1_error(num_classes: int) -> Metric:
    """A torchmetrics metric of 100 * (1 - top-1 accuracy), synced across processes.

    ``validate_args=False``: checking that every label is below ``num_classes`` reads the labels
    back to the host, a sync at every training step on a GPU; the data module's labels are valid.
    """
    return 100 * (1 - MulticlassAccuracy(num_classes=num_classes, average="micro", validate_args=False))
