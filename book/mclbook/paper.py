"""The numbers the paper reports (Zhang et al., ECCV 2024, as on the authors' poster), as data.

Chapters print these beside their own measurements; nothing here is ever used as a result.
Accuracies are fractions in [0, 1] for the unimodal tables and percentages for MMVP/retrieval,
as the paper prints them.
"""

from __future__ import annotations

# Linear-probe accuracy per attribute of plain contrastive models (feature suppression).
FEATURE_SUPPRESSION: dict[str, dict[str, float]] = {
    "SimCLR": {
        "cifar_mnist/cifar": 0.10,
        "cifar_mnist/mnist": 0.99,
        "trifeature/shape": 0.44,
        "trifeature/texture": 0.92,
        "trifeature/color": 1.00,
    },
    "MoCo-v2": {
        "cifar_mnist/cifar": 0.77,
        "cifar_mnist/mnist": 0.98,
        "trifeature/shape": 0.85,
        "trifeature/texture": 0.99,
        "trifeature/color": 1.00,
    },
}

MMVP_PATTERNS: list[str] = ["O&D", "PSF", "S&C", "Q&C", "P&R", "C&A", "S&P", "Texts", "V&P"]

# Pretrained CLIP on MMVP-VLM, % of pairs right per visual pattern.
CLIP_MMVP: dict[str, float] = dict(
    zip(MMVP_PATTERNS + ["average"], [26.7, 13.3, 26.7, 6.7, 6.7, 40.0, 26.7, 13.3, 20.0, 20.0], strict=True)
)

BASELINE_COLUMNS: list[str] = [
    "trifeature/shape",
    "trifeature/texture",
    "trifeature/color",
    "celeba/hair",
    "celeba/smiling",
    "celeba/gender",
    "cifar_mnist/cifar",
    "cifar_mnist/mnist",
    "average",
]

# MCL-trained SimCLR against baselines (linear-probe accuracy).
BASELINES: dict[str, dict[str, float]] = {
    method: dict(zip(BASELINE_COLUMNS, values, strict=True))
    for method, values in {
        "IFM": [0.99, 0.99, 1.00, 0.82, 0.70, 0.93, 0.11, 0.99, 0.82],
        "TS": [0.93, 1.00, 1.00, 0.62, 0.65, 0.87, 0.09, 0.99, 0.77],
        "FD": [0.75, 0.73, 0.78, 0.81, 0.89, 0.94, 0.78, 0.86, 0.82],
        "SimCLR": [0.81, 0.99, 1.00, 0.84, 0.75, 0.94, 0.29, 0.98, 0.83],
        "MCL": [1.00, 1.00, 1.00, 0.85, 0.79, 0.95, 0.87, 0.99, 0.93],
    }.items()
}

# AMI between the k-means clusters of MCL stages 0, 1, 2.
STAGE_AMI: list[list[float]] = [
    [1.00, 0.33, 0.25],
    [0.33, 1.00, 0.24],
    [0.25, 0.24, 1.00],
]

# MCL-tuned CLIP on MMVP-VLM, per pattern then the average (%).
MCL_CLIP_MMVP: dict[str, dict[str, float]] = {
    model: dict(zip(MMVP_PATTERNS + ["average"], values, strict=True))
    for model, values in {
        "ResNet stage 0": [6.7, 6.7, 46.7, 0.0, 13.3, 46.7, 33.3, 6.7, 13.3, 19.3],
        "ResNet stage 1": [13.3, 13.3, 40.0, 20.0, 0.0, 33.3, 33.3, 6.7, 26.7, 20.7],
        "ResNet stage 2": [6.7, 6.7, 33.3, 6.7, 6.7, 73.3, 13.3, 13.3, 33.3, 21.5],
        "ResNet stage 3": [0.0, 13.3, 33.3, 20.0, 0.0, 60.0, 33.3, 26.7, 20.0, 23.0],
        "ResNet MCL": [0.0, 13.3, 40.0, 6.67, 6.67, 73.3, 40.0, 6.7, 33.3, 24.4],
        "ViT stage 0": [26.7, 13.3, 26.7, 6.7, 6.7, 40.0, 26.7, 13.3, 20.0, 20.0],
        "ViT stage 1": [13.3, 33.3, 66.7, 26.7, 13.3, 53.3, 20.0, 13.3, 26.7, 29.6],
        "ViT stage 2": [0.0, 13.3, 46.7, 40.0, 6.7, 53.3, 20.0, 13.3, 20.0, 23.7],
        "ViT stage 3": [13.3, 6.67, 46.7, 13.3, 13.3, 66.7, 40.0, 13.3, 20.0, 25.9],
        "ViT MCL": [6.67, 20.0, 73.3, 13.3, 13.3, 80.0, 46.7, 13.3, 26.7, 32.6],
    }.items()
}

# Retrieval (%): COCO image->text R@1/5/10, COCO text->image R@1/5/10, then three Flickr30k
# values whose column labels are garbled on the poster (kept unlabelled on purpose).
RETRIEVAL_COLUMNS: list[str] = [
    "coco/i2t@1",
    "coco/i2t@5",
    "coco/i2t@10",
    "coco/t2i@1",
    "coco/t2i@5",
    "coco/t2i@10",
    "flickr30k/?1",
    "flickr30k/?2",
    "flickr30k/?3",
]
RETRIEVAL: dict[str, dict[str, float]] = {
    "OpenAI CLIP": dict(
        zip(RETRIEVAL_COLUMNS, [56.1, 79.5, 86.8, 35.4, 60.1, 70.2, 48.5, 72.6, 80.8], strict=True)
    ),
    "MCL model soup": dict(
        zip(RETRIEVAL_COLUMNS, [60.4, 82.4, 89.5, 42.2, 66.9, 76.2, 52.7, 76.6, 84.4], strict=True)
    ),
}

# Linear evaluation of MCL-trained SimCLR on ImageNet, by the stages concatenated.
IMAGENET_LINEAR: dict[str, float] = {"stage 0": 0.456, "stages 0+1": 0.477, "stages 0+1+2": 0.482}
