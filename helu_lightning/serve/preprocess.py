"""An export's recorded validation transform, applied to raw images with PIL and numpy alone (no torchvision, no
training code): the server runs it, and the exporter copies these functions into the standalone ``model.py``.

The steps and their arithmetic follow torchvision's v2 transforms on a PIL image, so a served image gets the
tensor the DataModule would have made: Resize (shorter side, ``int(size * long / short)`` for the other), CenterCrop
(``int(round((h - ch) / 2))`` offsets), ToDtype(float32, scale=True) (times 1/255), Normalize.
"""

from __future__ import annotations

from typing import Any

__all__ = ["image_mode", "prepare_image"]


def image_mode(channels: int) -> str:
    """The PIL mode of an 8-bit image with ``channels`` channels (1: ``L``, 3: ``RGB``)."""
    modes = {1: "L", 3: "RGB"}
    if channels not in modes:
        raise ValueError(f"input_size asks for {channels} channels; served images have 1 (grey) or 3 (RGB)")
    return modes[channels]


def prepare_image(image: Any, config: dict[str, Any], max_resized_pixels: int = 2**24, max_aspect: int = 16) -> Any:
    """One ``(C, H, W)`` float32 array from a PIL image as the recorded transform ``config`` makes it; ValueError
    naming the mode or size that does not fit (the server answers it as a 4xx). A resize that would make more than
    ``max_resized_pixels`` pixels, or of an image over ``max_aspect``:1, is refused before any pixel is allocated
    (a 1x60000 PNG is 100 bytes, its shorter side resized to 256 would be 4 GB)."""
    import numpy as np
    from PIL import Image

    channels, height, width = config["input_size"]
    mode = image_mode(channels)
    if config.get("convert"):
        image = image.convert(config["convert"])
    if image.mode != mode:
        raise ValueError(f"image has mode {image.mode} ({len(image.getbands())} channel(s)); this model takes "
                         f"8-bit {mode} images with {channels} channel(s)")
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    if config.get("resize"):
        size, (w, h) = int(config["resize"]), image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if long > max_aspect * short or new_w * new_h > max_resized_pixels:
            raise ValueError(f"image of {w}x{h} pixels would be resized to {new_w}x{new_h}; send an image at most "
                             f"{max_aspect} times as long as it is wide, whose shorter side resized to {size} "
                             f"makes at most {max_resized_pixels} pixels")
        image = image.resize((new_w, new_h), filters[config.get("interpolation", "bilinear")])
    if config.get("crop"):
        crop_h, crop_w = config["crop"]
        w, h = image.size
        if crop_h > h or crop_w > w:
            raise ValueError(f"image is {w}x{h} pixels after resizing, smaller than the {crop_w}x{crop_h} crop")
        top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
        image = image.crop((left, top, left + crop_w, top + crop_h))
    if image.size != (width, height):
        raise ValueError(f"image is {image.size[0]}x{image.size[1]} pixels; this model takes {width}x{height} "
                         f"({mode}) images")
    array = np.asarray(image, dtype=np.uint8).reshape(height, width, channels).transpose(2, 0, 1)
    array = array.astype(np.float32) * np.float32(1.0 / 255)  # ToDtype(scale=True) multiplies by 1/255
    mean = np.asarray(config["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(config["std"], dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((array - mean) / std, dtype=np.float32)
