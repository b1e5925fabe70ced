"""Results are written whole or not at all: a write that fails leaves the previous file."""

import errno
import json
from pathlib import Path

import pytest

from resnet_cifar.files import write_json_atomically


def test_results_file_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_json_atomically(path, {"test_err": 8.75})

    def fails(self, text):
        Path.write_bytes(self, text[:5].encode())
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", fails)
    with pytest.raises(OSError):
        write_json_atomically(path, {"test_err": 99.0})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"test_err": 8.75}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
