"""segkit.training's kit on tiny modules: output-folder refusals, best/last checkpoints, --resume and
its network check, early stopping, the model-package writer, the shared losses and the nnU-Net raw
case listing. The tasks' own tests (test_cc_train, test_brats_autosam2_task, test_ais_task) train
through it end to end."""

import json
import zipfile

import pytest

torch = pytest.importorskip("torch")

from segkit.errors import SegkitError  # noqa: E402
from segkit.runtime.checkpoint import load_data  # noqa: E402
from segkit.training import checkpoints as kit  # noqa: E402
from segkit.training.loop import EpochLoop, EpochResult  # noqa: E402

NETWORK = {"width": 3}


def _parts(network=NETWORK, seed=0, **extra):
    torch.manual_seed(seed)
    model = torch.nn.Linear(network["width"], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return kit.Trainables(model, optimizer, dict(network), scheduler=scheduler,
                          generator=torch.Generator().manual_seed(seed), **extra)


def _epoch_fn(parts, scores):
    """An epoch that takes one SGD step and reports the next of `scores` (None: not validated)."""

    def one_epoch(epoch):
        parts.optimizer.zero_grad()
        parts.model(torch.ones(1, parts.network["width"])).sum().backward()
        parts.optimizer.step()
        parts.scheduler.step()
        torch.rand(1, generator=parts.generator)
        score = scores[epoch - 1]
        return EpochResult({"train_loss": float(epoch)}, score=score, validation=None if score is None else {"dice": score})

    return one_epoch


def test_output_folder_refusals_are_one_line_for_every_task(tmp_path):
    kit.check_output_folder(tmp_path / "new", resume=False)
    with pytest.raises(SegkitError, match="--resume: no checkpoint at .*last.pt"):
        kit.check_output_folder(tmp_path / "new", resume=True)
    kit.last_checkpoint(tmp_path / "run").parent.mkdir(parents=True)
    kit.last_checkpoint(tmp_path / "run").write_bytes(b"x")
    with pytest.raises(SegkitError, match="already holds a training run; pass --resume"):
        kit.check_output_folder(tmp_path / "run", resume=False)
    kit.check_output_folder(tmp_path / "run", resume=True)


def test_the_loop_saves_best_and_last_and_emits_epoch_events(tmp_path):
    parts, events = _parts(), []
    state = EpochLoop(tmp_path, parts, 3, events.append).run(_epoch_fn(parts, [0.2, 0.7, 0.5]))
    assert state["epoch"] == 3 and state["best_epoch"] == 2 and state["best_score"] == 0.7
    assert state["best_validation"] == {"dice": 0.7}
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["epoch"], e["epochs"], e["best_score"]) for e in epochs] == [(1, 3, 0.2), (2, 3, 0.7), (3, 3, 0.7)]
    assert events[0] == {"event": "stage", "stage": "train", "epochs": 3, "start_epoch": 0}
    best = load_data(kit.best_checkpoint(tmp_path))
    assert best["epoch"] == 2 and best["network"] == NETWORK and set(best["model"]) == {"weight", "bias"}
    last = load_data(kit.last_checkpoint(tmp_path))
    assert {"model", "optimizer", "scheduler", "generator", "network", "state"} <= set(last)
    assert torch.equal(last["model"]["weight"], parts.model.weight.detach())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]  # no temps left


def _interrupted(parts, after):
    """The scores of _epoch_fn, then a Ctrl-C once `after` epochs have finished."""
    step = _epoch_fn(parts, [0.1, 0.3, 0.2, 0.9])

    def one_epoch(epoch):
        if epoch > after:
            raise KeyboardInterrupt
        return step(epoch)

    return one_epoch


def test_resume_continues_with_the_saved_state(tmp_path):
    first = _parts()
    with pytest.raises(KeyboardInterrupt):
        EpochLoop(tmp_path, first, 4, extra_state={"batch_size": 8}).run(_interrupted(first, after=2))
    resumed, events = _parts(seed=1), []
    loop = EpochLoop(tmp_path, resumed, 4, events.append, resume=True)
    assert loop.start_epoch == 2 and loop.state["batch_size"] == 8
    assert torch.equal(resumed.model.weight, first.model.weight)  # the run's weights, not the new seed's
    assert resumed.scheduler.last_epoch == first.scheduler.last_epoch
    assert torch.equal(resumed.generator.get_state(), first.generator.get_state())
    state = loop.run(_epoch_fn(resumed, [0.1, 0.3, 0.2, 0.9]))
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [3, 4]
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4] and state["best_epoch"] == 4


@pytest.fixture
def interrupted_run(tmp_path):
    parts = _parts()
    with pytest.raises(KeyboardInterrupt):
        EpochLoop(tmp_path, parts, 4).run(_interrupted(parts, after=2))
    return tmp_path


def test_resume_refuses_other_network_settings_naming_the_file(interrupted_run):
    with pytest.raises(SegkitError, match=r"--resume: .*last\.pt was trained with \{'width': 3\}; the options given now differ"):
        EpochLoop(interrupted_run, _parts({"width": 4}), 4, resume=True)


def test_resume_refuses_a_checkpoint_that_is_not_a_training_state(tmp_path):
    kit.atomic_torch_save({"weight": torch.ones(1)}, kit.last_checkpoint(tmp_path))
    with pytest.raises(SegkitError, match="not a segkit training checkpoint"):
        EpochLoop(tmp_path, _parts(), 2, resume=True)


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    parts, events = _parts(), []
    state = EpochLoop(tmp_path, parts, 10, events.append, patience=2).run(_epoch_fn(parts, [0.5, 0.6, 0.4, 0.4, 0.4, 0.9]))
    assert state["epoch"] == 4 and state["best_epoch"] == 2
    assert {"event": "stage", "stage": "early stop after epoch 4"} in events


def test_epochs_without_a_score_keep_last_only(tmp_path):
    parts, events = _parts(weights=lambda: {"weight": torch.zeros(1, 3)}, strict=False), []
    state = EpochLoop(tmp_path, parts, 2, events.append).run(_epoch_fn(parts, [None, None]))
    assert state["epoch"] == 2 and not kit.best_checkpoint(tmp_path).exists()
    assert "best_score" not in [e for e in events if e["event"] == "epoch"][-1]
    assert set(load_data(kit.last_checkpoint(tmp_path))["model"]) == {"weight"}  # the chosen tensors only
    EpochLoop(tmp_path, _parts(weights=lambda: {}, strict=False), 3, resume=True)  # strict=False: bias may be absent


def test_runs_saved_before_the_kit_resume(tmp_path):
    """cc_fodf's last.pt named the best score best_dice."""
    parts = _parts()
    kit.atomic_torch_save({"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
                           "scheduler": parts.scheduler.state_dict(), "generator": parts.generator.get_state(),
                           "network": NETWORK, "state": {"epoch": 1, "best_dice": 0.4, "best_epoch": 1, "history": [],
                                                          "best_validation": {}, "batch_size": 4}},
                          kit.last_checkpoint(tmp_path))
    loop = EpochLoop(tmp_path, _parts(), 2, resume=True)
    assert loop.state["best_score"] == 0.4 and "best_dice" not in loop.state


def test_the_package_writer_fills_in_the_sha256_and_zips(tmp_path):
    from segkit.registry.store import sha256_of
    from segkit.training.package import find_card, verified_weights, write_package

    weights = {"w": torch.arange(6.0).reshape(2, 3).t()}  # not contiguous: stored contiguous
    card = {"format": "segkit-test-model", "task": "test", "weights": {"epoch": 3}, "network": NETWORK}
    folder = write_package(tmp_path / "model", weights, card, zip_path=tmp_path / "test_model.zip")
    written = json.loads((folder / "model_card.json").read_text())
    assert list(written) == ["format", "task", "weights", "network"]
    assert written["weights"] == {"file": "model.pt", "sha256": sha256_of(folder / "model.pt"), "epoch": 3}
    assert verified_weights(folder, written)[1] == written["weights"]["sha256"]
    assert torch.equal(load_data(folder / "model.pt")["w"], weights["w"])
    with zipfile.ZipFile(tmp_path / "test_model.zip") as zf:
        assert zf.namelist() == ["model.pt", "model_card.json"]
    assert find_card(tmp_path / "model") == folder / "model_card.json"
    assert not list(tmp_path.glob(".*"))  # no temp file left beside the zip


def test_losses_are_zero_dice_for_a_perfect_prediction():
    from segkit.training.losses import dice_bce_loss, dice_ce_loss, soft_dice

    target = torch.tensor([[0, 1], [1, 1]]).float()
    assert float(soft_dice(target, target, dims=(0, 1), smooth=0.0)) == 1.0
    assert float(soft_dice(target, 1 - target, dims=(0, 1), smooth=0.0)) == 0.0
    labels = torch.randint(0, 4, (4, 5, 6), generator=torch.Generator().manual_seed(0))
    one_hot = torch.nn.functional.one_hot(labels, 4).permute(3, 0, 1, 2).float()
    assert float(dice_bce_loss(one_hot, labels)) == pytest.approx(0.3 * 1e-6, abs=1e-6)
    target = labels.clamp(max=1)[None]
    logits = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 40 - 20
    assert float(dice_ce_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_cases_pairs_labels_with_channels_in_the_order_asked(tmp_path):
    from segkit.engines.nnunet.dataset import list_cases

    for case in ("b", "a"):
        _touch(tmp_path / "labelsTr" / f"{case}.nii.gz")
        for channel in range(3):
            _touch(tmp_path / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
    _touch(tmp_path / "labelsTr" / ".hidden.nii.gz")
    _touch(tmp_path / "labelsTr" / "notes.txt")
    cases = list_cases(tmp_path, [2, 0, 1])
    assert [c.name for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].images] == ["a_0002.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz"]
    assert cases[0].label == tmp_path / "labelsTr" / "a.nii.gz"
    (tmp_path / "imagesTr" / "b_0001.nii.gz").unlink()
    with pytest.raises(SegkitError, match=r"imagesTr: case b \(label b.nii.gz\) lacks b_0001.nii.gz"):
        list_cases(tmp_path, [0, 1])
    assert [c.name for c in list_cases(tmp_path, [0])] == ["a", "b"]


def test_list_cases_takes_a_bare_single_channel_image_and_mixed_endings(tmp_path):
    from segkit.engines.nnunet.dataset import list_cases

    _touch(tmp_path / "labelsTr" / "dwi.nii.gz")
    _touch(tmp_path / "imagesTr" / "dwi.nii")
    assert list_cases(tmp_path, [0], bare_image=True)[0].images == (tmp_path / "imagesTr" / "dwi.nii",)
    with pytest.raises(SegkitError, match="lacks dwi_0000"):
        list_cases(tmp_path, [0])
    with pytest.raises(SegkitError, match="not an nnU-Net-style dataset: imagesTr/ is missing"):
        list_cases(tmp_path / "imagesTr")
    (tmp_path / "labelsTr" / "dwi.nii.gz").unlink()
    assert list_cases(tmp_path) == []


def test_a_model_card_that_is_not_json_of_the_format_or_lacks_network_settings_is_one_clear_error(tmp_path):
    """The card checks every segkit-trained package shares (cc_fodf, ais_ncct, brats_autosam2)."""
    from dataclasses import dataclass

    from segkit.training.package import ModelPackageError, network_settings, read_format_card

    @dataclass
    class Settings:
        width: float

        @classmethod
        def from_dict(cls, data):
            return cls(**data)

    card = tmp_path / "model_card.json"
    for text, needle in (("{not json", "cannot be read as JSON"), ('{"format": "other"}', "format is 'other', expected 'mine'"),
                         ("[1, 2]", "format is None")):
        card.write_text(text)
        with pytest.raises(ModelPackageError, match=needle):
            read_format_card(card, "mine")
    card.write_text('{"format": "mine", "network": {"width": 0.5}}')
    good = read_format_card(card, "mine")
    assert network_settings(tmp_path, good, Settings) == Settings(0.5)
    for bad in ({"format": "mine"}, {"format": "mine", "network": {"depth": 3}}):
        with pytest.raises(ModelPackageError, match="invalid network settings") as caught:
            network_settings(tmp_path, bad, Settings)
        assert "\n" not in str(caught.value)
