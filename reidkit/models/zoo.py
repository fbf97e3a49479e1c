"""The built-in models: torchvision ResNets and their IBN-Net designs with a re-ID head, and
OSNet.

Each builder carries its declaration (:class:`~reidkit.models.spec.ModelCfg`); the network
classes are imported when a model is built.

ImageNet weights: the ResNets take torchvision's IMAGENET1K_V1 files, the ones torchreid and
BoT start from; the IBN-Net ResNets take IBN-Net's own release files, as fast-reid does
(torchreid's ``resnet50_ibn_a`` starts from plain ResNet-50 weights and leaves every IBN
layer as initialised); OSNet takes torchreid's ImageNet files, which torchreid keeps in
TORCH_HOME/checkpoints as ``<name>_imagenet.pth``.
"""

from __future__ import annotations

import functools

from reidkit.models.spec import ModelCfg, Pretrained, register_model

RESNET_OPTIONS = {
    "bnneck": True,
    "last_stride": 1,
    "classifier": "linear",
    "neck_feat": "before",
    "non_local": False,
    "pooling": "avg",
    "gem_p": None,  # GeM's p: 3 when not given
    "gem_learnable": False,
    "stem_pool": "padding",
}
RESNET_HEAD = ("bnneck", "classifier", "pool")  # a learned GeM p is the head's, as fast-reid's


def _torchvision(depth: int, digest: str) -> Pretrained:
    filename = f"resnet{depth}-{digest}.pth"
    return Pretrained(
        "torchvision",
        f"https://download.pytorch.org/models/{filename}",
        filename,
        tag=f"ResNet{depth}_Weights.IMAGENET1K_V1",
    )


def _resnet_cfg(depth: int, pretrained: Pretrained, ibn: str | None = None) -> ModelCfg:
    design = f"-IBN-{ibn} (IBN-Net)" if ibn else ""
    return ModelCfg(
        f"ResNet-{depth}{design}, BNNeck head and last stride 1 (BoT) by default",
        feature_dim=512 if depth < 50 else 2048,
        options=RESNET_OPTIONS,
        distance="cosine",  # BoT ranks the features after the BNNeck by cosine
        head=RESNET_HEAD,
        pretrained=pretrained,
    )


def _resnet(depth: int, num_classes: int, ibn: str | None = None, **options):
    from reidkit.models.resnet import ReIDResNet

    return ReIDResNet(depth, num_classes, ibn=ibn, **options)


@register_model("resnet18", _resnet_cfg(18, _torchvision(18, "f37072fd")))
def resnet18(num_classes: int, **options):
    return _resnet(18, num_classes, **options)


@register_model("resnet34", _resnet_cfg(34, _torchvision(34, "b627a593")))
def resnet34(num_classes: int, **options):
    return _resnet(34, num_classes, **options)


@register_model("resnet50", _resnet_cfg(50, _torchvision(50, "0676ba61")))
def resnet50(num_classes: int, **options):
    return _resnet(50, num_classes, **options)


@register_model("resnet101", _resnet_cfg(101, _torchvision(101, "63fe2227")))
def resnet101(num_classes: int, **options):
    return _resnet(101, num_classes, **options)


@register_model("resnet152", _resnet_cfg(152, _torchvision(152, "394f9c45")))
def resnet152(num_classes: int, **options):
    return _resnet(152, num_classes, **options)


# IBN-Net's ImageNet files (the GitHub release v1.0 of XingangPan/IBN-Net): the digest in
# each name, as torch.hub names its files
IBN_IMAGENET = {
    "resnet18_ibn_a": "2f571257",
    "resnet34_ibn_a": "94bc1577",
    "resnet50_ibn_a": "d9d0bb7b",
    "resnet101_ibn_a": "59ea0ac6",
    "resnet18_ibn_b": "bc2f3c11",
    "resnet34_ibn_b": "04134c37",
    "resnet50_ibn_b": "9ca61e85",
    "resnet101_ibn_b": "c55f6dba",
}
IBN_RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0"


def _ibn_file(name: str) -> Pretrained:
    filename = f"{name}-{IBN_IMAGENET[name]}.pth"
    return Pretrained("ibn-net", f"{IBN_RELEASE}/{filename}", filename)


for _name in IBN_IMAGENET:  # resnet<depth>_ibn_<design>
    _depth, _design = int(_name[6:].split("_")[0]), _name[-1]
    register_model(_name, _resnet_cfg(_depth, _ibn_file(_name), ibn=_design))(
        functools.partial(_resnet, _depth, ibn=_design)
    )


def _pcb_cfg(parts: int) -> ModelCfg:
    return ModelCfg(
        f"PCB (Sun et al., ECCV 2018) as torchreid builds it: ResNet-50, stride-1 layer4, "
        f"{parts} stripes, each with its classifier",
        feature_dim=2048 * parts,
        input_size=(384, 128),  # the paper's (torchreid trains it at any size)
        options={"part_feature": "full"},
        distance="euclidean",  # of stripes normalised one by one, as torchreid ranks them
        head=("conv5", "classifier"),
        pretrained=_torchvision(50, "0676ba61"),  # torchreid starts it from ResNet-50's
    )


def _pcb(parts: int, num_classes: int, **options):
    from reidkit.models.pcb import PCB

    return PCB(num_classes, parts=parts, **options)


@register_model("pcb_p6", _pcb_cfg(6))
def pcb_p6(num_classes: int, **options):
    return _pcb(6, num_classes, **options)


@register_model("pcb_p4", _pcb_cfg(4))
def pcb_p4(num_classes: int, **options):
    return _pcb(4, num_classes, **options)


MGN_OPTIONS = {
    "last_stride": 1,  # of the first branch (the part branches' layer4 has stride 1)
    "classifier": "linear",
    "pooling": "gem",
    "gem_p": None,  # 3 when not given
    "gem_learnable": None,  # learned with GeM, as fast-reid's MGN (GeneralizedMeanPoolingP)
    "stem_pool": "padding",
    "head_layout": "later",  # "zoo": fast-reid's model-zoo MGN files (reidkit.models.mgn)
}
MGN_HEADS = tuple(f"{b}_head" for b in ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33"))


def _mgn_cfg(ibn: str | None, pretrained: Pretrained) -> ModelCfg:
    design = f"-IBN-{ibn}" if ibn else ""
    return ModelCfg(
        f"MGN (Wang et al., ACM MM 2018) as fast-reid builds it on ResNet-50{design}: "
        "three branches, eight 256-d heads",
        feature_dim=2048,
        input_size=(384, 128),  # fast-reid's MGN recipe
        options=MGN_OPTIONS,
        distance="cosine",  # fast-reid ranks MGN's features by cosine
        head=MGN_HEADS,
        pretrained=pretrained,
    )


def _mgn(num_classes: int, ibn: str | None = None, **options):
    from reidkit.models.mgn import MGN

    return MGN(num_classes, ibn=ibn, **options)


@register_model("mgn_resnet50", _mgn_cfg(None, _torchvision(50, "0676ba61")))
def mgn_resnet50(num_classes: int, **options):
    return _mgn(num_classes, **options)


@register_model("mgn_resnet50_ibn_a", _mgn_cfg("a", _ibn_file("resnet50_ibn_a")))
def mgn_resnet50_ibn_a(num_classes: int, **options):
    return _mgn(num_classes, "a", **options)


# torchreid's Google Drive files of OSNet trained on ImageNet
OSNET_IMAGENET = {
    "x1_0": "1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY",
    "x0_75": "1uwA9fElHOk3ZogwbeY5GkLI6QPTX70Hq",
    "x0_5": "16DGLbZukvVYgINws8u8deSaOqjybZ83i",
    "x0_25": "1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
}


# torchreid's Google Drive files of OSNet-IBN and OSNet-AIN trained on ImageNet
# (torchreid/models/osnet.py and osnet_ain.py)
OSNET_IN_IMAGENET = {
    "ibn_x1_0": "1sr90V6irlYYDd4_4ISU2iruoRG8J__6l",
    "ain_x1_0": "1-CaioD9NaqbHK_kzSMW8VE4_3KcsRjEo",
    "ain_x0_75": "1apy0hpsMypqstfencdH-jKIUEFOW4xoM",
    "ain_x0_5": "1KusKvEYyKGDTUBVRxRiz55G31wkihB6l",
    "ain_x0_25": "1SxQt2AvmEcgWNhaRb2xC4rP6ZwVDP0Wt",
}
OSNET_DESIGNS = {"ibn": "OSNet-IBN", "ain": "OSNet-AIN"}


def _osnet_cfg(suffix: str, width: float, design: str | None = None) -> ModelCfg:
    file_id = OSNET_IN_IMAGENET[f"{design}_{suffix}"] if design else OSNET_IMAGENET[suffix]
    name = f"{design}_{suffix}" if design else suffix
    return ModelCfg(
        f"{OSNET_DESIGNS.get(design, 'OSNet')}, width x{width}",
        feature_dim=512,
        # torchreid evaluates OSNet with euclidean distances of unnormalised features
        distance="euclidean",
        pretrained=Pretrained(
            "torchreid",
            f"https://drive.google.com/uc?id={file_id}",
            f"osnet_{name}_imagenet.pth",
        ),
    )


def _osnet(width: float, num_classes: int, design: str | None = None, **options):
    from reidkit.models.osnet import OSNet

    return OSNet(num_classes, width=width, design=design, **options)


@register_model("osnet_x1_0", _osnet_cfg("x1_0", 1.0))
def osnet_x1_0(num_classes: int, **options):
    return _osnet(1.0, num_classes, **options)


@register_model("osnet_x0_75", _osnet_cfg("x0_75", 0.75))
def osnet_x0_75(num_classes: int, **options):
    return _osnet(0.75, num_classes, **options)


@register_model("osnet_x0_5", _osnet_cfg("x0_5", 0.5))
def osnet_x0_5(num_classes: int, **options):
    return _osnet(0.5, num_classes, **options)


@register_model("osnet_x0_25", _osnet_cfg("x0_25", 0.25))
def osnet_x0_25(num_classes: int, **options):
    return _osnet(0.25, num_classes, **options)


@register_model("osnet_ibn_x1_0", _osnet_cfg("x1_0", 1.0, "ibn"))
def osnet_ibn_x1_0(num_classes: int, **options):
    return _osnet(1.0, num_classes, "ibn", **options)


@register_model("osnet_ain_x1_0", _osnet_cfg("x1_0", 1.0, "ain"))
def osnet_ain_x1_0(num_classes: int, **options):
    return _osnet(1.0, num_classes, "ain", **options)


@register_model("osnet_ain_x0_75", _osnet_cfg("x0_75", 0.75, "ain"))
def osnet_ain_x0_75(num_classes: int, **options):
    return _osnet(0.75, num_classes, "ain", **options)


@register_model("osnet_ain_x0_5", _osnet_cfg("x0_5", 0.5, "ain"))
def osnet_ain_x0_5(num_classes: int, **options):
    return _osnet(0.5, num_classes, "ain", **options)


@register_model("osnet_ain_x0_25", _osnet_cfg("x0_25", 0.25, "ain"))
def osnet_ain_x0_25(num_classes: int, **options):
    return _osnet(0.25, num_classes, "ain", **options)
