import pytest
import torch

import pinnkit as pk


def test_default_and_env(monkeypatch):
    monkeypatch.delenv("PINNKIT_PRESET", raising=False)
    expected = "paper" if torch.cuda.is_available() else "classroom"
    assert pk.presets.current().name == expected
    monkeypatch.setenv("PINNKIT_PRESET", "paper")
    assert pk.presets.current().name == "paper"
    assert pk.presets.current("classroom").name == "classroom"


def test_test_command_forces_classroom():
    import os
    assert os.environ.get("PINNKIT_PRESET") == "classroom", "make test must set PINNKIT_PRESET=classroom"


def test_choose_and_unknown(monkeypatch):
    p = pk.presets.current("classroom")
    assert p.choose(classroom=1, paper=2) == 1 and pk.presets.current("paper").choose(classroom=1, paper=2) == 2
    with pytest.raises(ValueError, match="valid: classroom, paper"):
        pk.presets.current("huge")
    monkeypatch.setenv("PINNKIT_PRESET", "gpu")
    with pytest.raises(ValueError, match="PINNKIT_PRESET"):
        pk.setup()


def test_setup_threads(capsys):
    before = torch.get_num_threads()
    try:
        p = pk.setup("classroom", threads=1)
        assert torch.get_num_threads() == 1 and "classroom" in capsys.readouterr().out
        with pytest.raises(ValueError, match="positive"):
            pk.setup("classroom", threads=-2)
    finally:
        torch.set_num_threads(before)
