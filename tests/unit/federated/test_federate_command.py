"""`yulian federate` argument handling that needs no training: field values for field:NAME, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.federated.commands import federate_command, field_values


def test_field_values_from_jsonl_and_csv(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x", "source": "bank-a"}, {"text": "b", "label": "y", "source": "shop"}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    csv = tmp_path / "d.csv"
    csv.write_text("text,label,source\na,x,bank-a\nb,y,shop\n")
    assert field_values(jsonl, "source") == field_values(csv, "source") == ["bank-a", "shop"]
    with pytest.raises(ValueError, match=r"has no field 'owner' \(fields: text, label, source\)"):
        field_values(csv, "owner")


def test_federate_without_data_or_with_a_bad_strategy_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yulian.cli import main

    commands = {"federate": federate_command}
    assert main(["federate"], commands=commands) == 1
    assert "no training data: give --data FILE" in capsys.readouterr().err
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20)))
    assert main(["federate", "--data", str(data), "--model", "x", "--strategy", "fedsgd"], commands=commands) == 1
    assert "unknown strategy 'fedsgd' (available: fedavg, fedprox, fedavgm)" in capsys.readouterr().err
