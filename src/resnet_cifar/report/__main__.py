"""The paper's table and figures from a folder of runs.

    python -m resnet_cifar.report DIR

Every directory below DIR with a ``.hydra/config.yaml`` is a run. Finished runs (a complete
``metrics.json``) enter the tables; the others are listed as failed or unfinished. Writes
``DIR/report.md`` with its plots beside it: ``training_curves.png`` (paper Fig. 6),
``error_vs_depth.png`` and ``layer_responses.png`` (Fig. 7, from the final checkpoints).
"""

import argparse
import sys

from resnet_cifar.errors import exit_status
from resnet_cifar.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_cifar.report",
        description="Write DIR/report.md (test error per variant and depth beside the paper's) and plots.",
    )
    parser.add_argument("dir", metavar="DIR", help="a sweep or outputs directory; every run below it is read")
    parser.add_argument(
        "--no-responses",
        action="store_true",
        help="skip Fig. 7 (layer responses), which loads every final checkpoint and the validation data",
    )
    args = parser.parse_args(argv)
    return exit_status(
        lambda: f"report: {write_report(args.dir, responses=not args.no_responses)}", f"the report into {args.dir}"
    )


if __name__ == "__main__":
    sys.exit(main())
