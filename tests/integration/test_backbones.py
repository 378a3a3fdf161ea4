"""Pretrained backbones on real photos, without internet: torchvision's resnet18 (and timm's) built with random
weights, loaded from a weights file these tests save themselves (the loading path, the head replacement, the weights'
normalisation metadata), trained on crops of scikit-learn's two sample photographs, then tested, exported, explained,
served, cross-validated and tuned; the freeze -> unfreeze schedule checked weight by weight.

No figure here comes from ImageNet weights: the "pretrained" file holds random weights (nothing can be downloaded).
"""

from __future__ import annotations

import base64
import io
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from helpers.cli import REPO, in_process, quiet_trainer
from helpers.service import serving

from lit_nets.core.errors import UserError

CONFIG = str(REPO / "configs" / "photos.yaml")
SMALL = ["--data.image_size", "64", "--trainer.enable_progress_bar", "false"]  # 64 px: seconds, not minutes


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The shipped photo sample: 60 JPEG crops of 200-420 px of each of scikit-learn's two photographs."""
    from lit_nets.core.data.samples import write_png_sample

    return write_png_sample("photos", tmp_path_factory.mktemp("photos") / "photos")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A stand-in for torchvision's resnet18 weight file: a state_dict of the 1,000-class model (random weights)."""
    from torchvision.models import resnet18

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    return path


def test_a_weights_file_fills_the_backbone_and_the_head_is_new(weights_file: Path) -> None:
    from lit_nets.core.models.backbones import BackboneNet, weights_info

    source = torch.load(weights_file, weights_only=True)
    net = BackboneNet("resnet18", num_outputs=2)
    loaded = net.load_pretrained(str(weights_file))
    ours = net.body.state_dict()
    assert set(loaded) == {k for k in source if not k.startswith("fc.")}
    assert all(torch.equal(ours[k], source[k]) for k in loaded)
    assert ours["fc.weight"].shape == (2, 512) and source["fc.weight"].shape == (1000, 512)
    assert net.head == "body.fc" and net.cam_layer == "body.layer4"
    # the file is taken for the library's weights of that architecture: their normalisation and input size
    info = weights_info("resnet18", str(weights_file))
    assert info.mean == [0.485, 0.456, 0.406] and info.std == [0.229, 0.224, 0.225]
    assert (info.image_size, info.crop_pct) == (224, 0.875)
    assert weights_info("efficientnet_b3", "DEFAULT").image_size == 300  # each architecture's own
    random = weights_info("resnet18", None)
    assert random.mean is None and random.image_size == 224  # no weights: the data's statistics are measured


def test_a_weights_file_of_another_architecture_is_one_line(tmp_path: Path) -> None:
    from torchvision.models import resnet34

    from lit_nets.core.errors import UserError
    from lit_nets.core.models.backbones import BackboneNet

    torch.save(resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(UserError, match=r"resnet34\.pth: .* another architecture"):
        BackboneNet("resnet18", 2).load_pretrained(str(tmp_path / "resnet34.pth"))
    with pytest.raises(UserError, match="did you mean resnet18"):
        BackboneNet("resnet181", 2)


def test_an_old_release_file_without_batchnorm_counters_loads_every_tensor_it_has(tmp_path: Path, weights_file) -> None:
    """torchvision's older released weight files lack BatchNorm's num_batches_tracked; torchvision accepts them."""
    from lit_nets.core.models.backbones import BackboneNet

    source = {
        k: v for k, v in torch.load(weights_file, weights_only=True).items() if not k.endswith("num_batches_tracked")
    }
    torch.save(source, tmp_path / "resnet18-old.pth")
    net = BackboneNet("resnet18", num_outputs=2)
    loaded = net.load_pretrained(str(tmp_path / "resnet18-old.pth"))
    ours = net.body.state_dict()
    assert set(loaded) == {k for k in source if not k.startswith("fc.")} and len(loaded) == 100
    assert all(torch.equal(ours[k], source[k]) for k in loaded)
    # only the counters may be absent: a file without a real tensor is still refused
    del source["layer1.0.bn1.running_var"]
    torch.save(source, tmp_path / "resnet18-torn.pth")
    with pytest.raises(UserError, match=r"1 of resnet18's tensors .* layer1\.0\.bn1\.running_var"):
        BackboneNet("resnet18", 2).load_pretrained(str(tmp_path / "resnet18-torn.pth"))


def test_a_weights_file_keyed_by_integers_is_one_line(tmp_path: Path) -> None:
    from lit_nets.core.models.backbones import BackboneNet

    torch.save({0: torch.zeros(3), 1: torch.ones(2)}, tmp_path / "ints.pth")
    with pytest.raises(UserError, match=r"ints\.pth: 2 of its keys are not tensor names \(e\.g\. 0\)"):
        BackboneNet("resnet18", 2).load_pretrained(str(tmp_path / "ints.pth"))


@pytest.mark.parametrize(("name", "size"), [("vit_b_16", 64), ("inception_v3", 32), ("alexnet", 16)])
def test_a_backbone_refuses_an_image_size_it_cannot_take_before_training(name: str, size: int) -> None:
    from lit_nets.models import BackboneClassifier

    with pytest.raises(UserError, match=rf"model\.backbone {name} cannot take {size}x{size} images .*data\.image_size"):
        BackboneClassifier(backbone=name, weights=None, input_shape=[3, size, size], num_classes=2)


@pytest.mark.parametrize(
    ("name", "cam"), [("mobilenet_v3_small", "body.features"), ("regnet_y_400mf", "body.trunk_output")]
)
def test_other_families_get_a_head_for_the_classes(name: str, cam: str) -> None:
    from lit_nets.core.models.backbones import BackboneNet

    net = BackboneNet(name, num_outputs=3, freeze="backbone").eval()
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 3) and net.cam_layer == cam
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    top = ".".join(net.head.split(".")[:2]) + "."  # the classifier part that holds the new head (mobilenet: an MLP)
    assert trainable and all(n.startswith(top) for n in trainable)  # frozen: everything before it


def test_offline_default_weights_name_the_file_and_where_to_put_it(weights_file, tmp_path, monkeypatch) -> None:
    from lit_nets.core.errors import UserError
    from lit_nets.core.models.backbones import BackboneNet

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch hub's cache: TORCH_HOME/hub/checkpoints
    with pytest.raises(UserError) as caught:
        BackboneNet("resnet18", 2).load_pretrained("DEFAULT")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"put it at {cached}" in str(caught.value) and "Name or service not known" in str(caught.value)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(weights_file.read_bytes())  # as a download would have left it: no download now
    assert len(BackboneNet("resnet18", 2).load_pretrained("DEFAULT")) == 120


def test_freeze_then_unfreeze_weight_by_weight(photos: Path, weights_file: Path) -> None:
    """Epoch 0: the backbone (weights and BatchNorm statistics) stays exactly the file's while the head learns;
    epoch 1: the backbone trains too, at a tenth of the head's learning rate."""
    from lightning.pytorch import Callback

    from lit_nets.data import ImageFolderDataModule
    from lit_nets.models import BackboneClassifier

    source = torch.load(weights_file, weights_only=True)
    dm = ImageFolderDataModule(
        root=str(photos),
        image_size=32,
        crop_pct=0.875,
        augment="light",
        batch_size=16,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    model = BackboneClassifier(
        weights=str(weights_file),
        freeze="backbone",
        unfreeze_at_epoch=1,
        backbone_lr=0.1,
        optimizer="adam",
        lr=1e-3,
        **dm.model_args(),
    )
    head_before = model.net.body.fc.weight.detach().clone()
    seen: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seen[trainer.current_epoch] = {k: v.detach().clone() for k, v in pl_module.net.body.state_dict().items()}

    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[Snapshot()])
    trainer.fit(model, datamodule=dm)
    backbone = [k for k in source if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(seen[0][k], source[k]) for k in backbone)  # frozen: bit-identical, BN statistics too
    assert not torch.equal(seen[0]["fc.weight"], head_before)  # while the head learned
    assert not torch.equal(seen[1]["layer1.0.conv1.weight"], source["layer1.0.conv1.weight"])  # unfrozen: trains
    assert not torch.equal(seen[1]["bn1.running_mean"], source["bn1.running_mean"])
    head, rest = trainer.optimizers[0].param_groups
    assert rest["lr"] == pytest.approx(0.1 * head["lr"]) and len(head["params"]) == 2


def test_evaluation_crops_are_what_serving_decodes_in_memory_and_streamed(photos: Path) -> None:
    """The validation images (resize to cover 74 px, centre crop 64) are the pixels ``decode`` gives one file (what
    predict, explain and serve use), whether the folder is held in memory or streamed from disk in workers."""
    from lit_nets.core.data.image_io import decode
    from lit_nets.data import ImageFolderDataModule

    def module(**kwargs):
        dm = ImageFolderDataModule(
            root=str(photos), image_size=64, crop_pct=0.875, augment="randaugment", batch_size=8, cache=False, **kwargs
        )
        dm.setup("fit")
        return dm

    memory, streamed = module(), module(max_memory_mb=0, num_workers=1)
    assert isinstance(memory.splits.val, tuple) and not isinstance(streamed.splits.val, tuple)
    x, _ = memory.splits.val
    first = photos / memory.splits.val_ids[0]
    assert torch.equal(x[0], decode(first, 3, (64, 64), crop_pct=0.875))
    assert torch.equal(streamed.splits.val[0][0], x[0])
    assert memory.splits.train[0].shape[2:] == (73, 73)  # kept at the cover size: each epoch crops anew
    memory.trainer = streamed.trainer = None
    for dm in (memory, streamed):
        batch, labels = next(iter(dm.train_dataloader()))
        assert batch.shape == (8, 3, 64, 64) and batch.dtype == torch.uint8 and labels.shape == (8,)
    again, _ = next(iter(memory.train_dataloader()))
    assert not torch.equal(again, next(iter(memory.train_dataloader()))[0])  # a new draw of crops each pass


def test_mixup_and_cutmix_give_labels_in_shares() -> None:
    from lit_nets.core.data.images import ImageDataModule

    class ThreeClasses(ImageDataModule):
        num_classes = 3  # type: ignore[assignment]

    dm = ThreeClasses(mixup=0.4, cutmix=1.0)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    _, y = dm._mix(x.float() / 255, torch.arange(16) % 3)
    assert y.shape == (16, 3) and torch.allclose(y.sum(1), torch.ones(16)) and (y.max(1).values < 1).any()


@pytest.fixture(scope="module")
def photo_run(photos: Path, weights_file: Path, tmp_path_factory) -> Path:
    """configs/photos.yaml from the weights file, at 64 px, 3 epochs (1 frozen): the folder it ran in."""
    work = tmp_path_factory.mktemp("photo_run")
    (work / "data").symlink_to(photos.parent)
    in_process(
        "fit",
        "--config",
        CONFIG,
        "--model.weights",
        str(weights_file),
        "--trainer.max_epochs",
        "3",
        *SMALL,
        cwd=work,
        check=True,
    )
    return work


def test_photos_config_trains_from_a_weights_file(photo_run: Path) -> None:
    from lit_nets.core.checkpoint_files import load

    ckpt = load(photo_run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    hp = ckpt["hyper_parameters"]
    assert hp["mean"] == [0.485, 0.456, 0.406] and hp["std"] == [0.229, 0.224, 0.225]  # the weights', not measured
    assert (
        hp["schema"]["crop_pct"] == 0.875
        and hp["input_shape"] == [3, 64, 64]
        and hp["class_names"] == ["china", "flower"]
    )
    from helpers.cli import scalars

    acc = scalars(photo_run / "lightning_logs" / "version_0")["test/acc"][-1][1]
    assert acc >= 0.8, f"test/acc {acc} on 24 crops (chance 0.5)"


def test_every_tool_works_on_a_backbone_checkpoint(photo_run: Path, photos: Path, monkeypatch, capfd) -> None:
    best = "lightning_logs/version_0/checkpoints/last.ckpt"
    out = in_process("export", "--ckpt_path", best, cwd=photo_run, monkeypatch=monkeypatch, capfd=capfd, check=True)
    parity = re.findall(r"^(\w+) .* max \|diff\| ([\d.e+-]+), same top-1: True", out.stdout, re.M)
    assert [fmt for fmt, _ in parity] == ["state_dict", "torchscript", "pt2", "onnx"], out.stdout
    image = photos / "flower" / "007.jpg"
    out = in_process(
        "explain",
        "--ckpt_path",
        best,
        "--images",
        str(image),
        "--out",
        "cams",
        cwd=photo_run,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert (photo_run / "cams" / "007.cam.png").is_file() and "007.jpg: " in out.stdout
    out = in_process(
        "predict",
        "--config",
        CONFIG,
        "--ckpt_path",
        best,
        "--data.predict_root",
        str(photos / "china"),
        cwd=photo_run,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    rows = (sorted(photo_run.glob("lightning_logs/version_*/china.predictions.csv"))[-1]).read_text().splitlines()
    labels = [row.split(",")[1] for row in rows[1:]]
    assert len(labels) == 60 and labels.count("china") >= 45, labels


def test_a_backbone_is_served_with_its_crop_and_overlay(photo_run: Path, photos: Path) -> None:
    import requests
    from PIL import Image

    from lit_nets.core.data.image_io import decode
    from lit_nets.deploy.inference import load_classifier

    ckpt = photo_run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    model = load_classifier(ckpt)
    files = [photos / "china" / "003.jpg", photos / "flower" / "004.jpg"]
    with torch.no_grad():
        expected = [model.class_names[int(model(decode(f, 3, (64, 64), crop_pct=0.875)[None]).argmax())] for f in files]
    with serving(ckpt, photo_run) as url:
        for file, label in zip(files, expected, strict=True):
            answer = requests.post(
                f"{url}/predict", files={"file": (file.name, file.read_bytes())}, data={"explain": "1"}, timeout=60
            ).json()
            assert answer["label"] == label, answer  # the service crops as the data module did
            overlay = Image.open(io.BytesIO(base64.b64decode(answer["gradcam"].split(",", 1)[1])))
            assert overlay.mode == "RGB" and min(overlay.size) >= 64
        assert "<html" in requests.get(url, timeout=30).text.lower()


@pytest.mark.slow  # cv and tune are in the fast suite on the MLP and CNN configs (test_cv, test_tune, the README)
def test_cv_and_tune_run_a_backbone(photos: Path, weights_file: Path, tmp_path: Path, monkeypatch, capfd) -> None:
    (tmp_path / "data").symlink_to(photos.parent)
    tiny = ["--data.image_size", "32", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false"]
    out = in_process(
        "cv",
        "--config",
        CONFIG,
        "--folds",
        "2",
        "--model.weights",
        str(weights_file),
        "--data.mixup",
        "0.2",
        "--data.cutmix",
        "1.0",
        *tiny,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert "| mean ± std |" in out.stdout
    out = in_process(
        "tune",
        "--config",
        CONFIG,
        "--space",
        str(REPO / "configs" / "search" / "photos.yaml"),
        "--trials",
        "2",
        "--model.weights",
        str(weights_file),
        *tiny,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert "Best config:" in out.stdout


def test_timm_backbones_load_a_weights_file(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    from lit_nets.core.models.backbones import BackboneNet, weights_info

    source = timm.create_model("resnet18", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "timm_resnet18.pth")
    net = BackboneNet("timm:resnet18", num_outputs=2)
    assert len(net.load_pretrained(str(tmp_path / "timm_resnet18.pth"))) == 120
    assert torch.equal(net.body.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert net.head == "body.fc" and net.cam_layer == "body.layer4" and net.body.fc.out_features == 2
    assert weights_info("timm:resnet18", "DEFAULT").crop_pct == 0.95  # timm's own record for its weights


@pytest.mark.slow
def test_resnet18_from_scratch_learns_the_photos(photos: Path, tmp_path: Path, monkeypatch, capfd) -> None:
    """No pretrained weights at all: resnet18 from random weights, 112 px, 15 epochs."""
    from helpers.cli import scalars

    (tmp_path / "data").symlink_to(photos.parent)
    args = [
        "--model.weights",
        "null",
        "--model.freeze",
        "none",
        "--data.image_size",
        "112",
        "--trainer.max_epochs",
        "15",
    ]
    in_process("fit", "--config", CONFIG, *args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd, check=True)
    acc = scalars(tmp_path / "lightning_logs" / "version_0")["test/acc"][-1][1]
    assert acc >= 0.9, acc
