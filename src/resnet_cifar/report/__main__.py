"""The paper's table and figures from a folder of runs.

    python -m resnet_cifar.report DIR

Every directory below DIR with a ``.hydra/config.yaml`` is a run. Finished runs (a complete
``metrics.json``) enter the tables; the others are listed as failed or unfinished. Writes
``DIR/report.md`` with its plots beside it: ``training_curves.png`` (paper Fig. 6),
``error_vs_depth.png`` and ``layer_responses.png`` (Fig. 7, from the final checkpoints).
"""

import argparse
import sys

from resnet_cifar.report import ReportError, write_report


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
    try:
        path = write_report(args.dir, responses=not args.no_responses)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write the report into {args.dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
