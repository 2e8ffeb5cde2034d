import pytest
import torch

import pinnkit as pk


def pretend_gpu(monkeypatch, available=True):
    """Pretend one CUDA device exists, or none (only the availability checks; nothing is allocated)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(available))


@pytest.fixture
def fake_gpu(monkeypatch):
    pretend_gpu(monkeypatch)


@pytest.mark.parametrize("gpu", [False, True])
def test_default_preset_and_device(monkeypatch, gpu):
    monkeypatch.delenv("PINNKIT_PRESET", raising=False)
    monkeypatch.delenv("PINNKIT_DEVICE", raising=False)
    pretend_gpu(monkeypatch, gpu)
    assert pk.presets.current().name == ("paper" if gpu else "classroom")
    # the classroom preset runs on the CPU even with a GPU: its stored outputs are CPU numbers
    assert pk.presets.current("classroom").device == torch.device("cpu")
    assert pk.presets.current("paper").device.type == ("cuda" if gpu else "cpu")
    monkeypatch.setenv("PINNKIT_PRESET", "Paper")
    assert pk.presets.current().name == "paper" and pk.presets.current("classroom").name == "classroom"


def test_pinnkit_device_overrides_the_preset(monkeypatch, fake_gpu):
    monkeypatch.setenv("PINNKIT_DEVICE", "cpu")
    assert pk.presets.current("paper").device == torch.device("cpu")      # what make test sets
    monkeypatch.setenv("PINNKIT_DEVICE", "cuda")
    assert pk.presets.current("classroom").device == torch.device("cuda", 0)
    monkeypatch.setenv("PINNKIT_DEVICE", "cuda:3")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        pk.presets.current("paper")


def test_setup_prints_the_line_stored_in_the_notebooks(monkeypatch, capsys):
    monkeypatch.delenv("PINNKIT_DEVICE", raising=False)
    before = torch.get_num_threads()
    try:
        pk.setup("classroom")
    finally:
        torch.set_num_threads(before)
    assert capsys.readouterr().out == "pinnkit preset: classroom (device: cpu)\n"


def test_choose_and_unknown(monkeypatch):
    p = pk.presets.current("classroom")
    assert p.choose(classroom=1, paper=2) == 1 and pk.presets.current("paper").choose(classroom=1, paper=2) == 2
    with pytest.raises(ValueError, match="valid: classroom, paper"):
        pk.presets.current("huge")
    monkeypatch.setenv("PINNKIT_PRESET", "gpu")
    with pytest.raises(ValueError, match="PINNKIT_PRESET"):
        pk.setup()


def test_setup_threads(capsys, monkeypatch):
    monkeypatch.delenv("PINNKIT_DEVICE", raising=False)
    before = torch.get_num_threads()
    try:
        pk.setup("classroom", threads=1)
        assert torch.get_num_threads() == 1 and "classroom" in capsys.readouterr().out
        with pytest.raises(ValueError, match="positive"):
            pk.setup("classroom", threads=-2)
    finally:
        torch.set_num_threads(before)
