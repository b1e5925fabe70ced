"""Top-1 error in percent, the number the paper reports."""

from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy


def top1_error(num_classes: int, validate_args: bool = True) -> Metric:
    """A torchmetrics metric of 100 * (1 - top-1 accuracy), synced across processes.

    ``validate_args=False`` skips the input checks, which read values back from the device
    (a host sync on a GPU) at every update.
    """
    return 100 * (1 - MulticlassAccuracy(num_classes=num_classes, average="micro", validate_args=validate_args))
