"""Decoding sample images with a pixel limit, for training and evaluation alike. No torch here.

An image is read only when its header promises at most `max_pixels` pixels: a 100-megapixel
JPEG that a model sees at 224 x 224 costs a loader process a gigabyte or more to decode, and a
PNG "decompression bomb" of a few kilobytes can claim far more. The default limit follows the
model's input size (`pixel_limit`): 16 times its side each way, and at least one megapixel;
`max_image_pixels` in the training and eval configs sets it. PIL's own DecompressionBombWarning
and DecompressionBombError (above 89 and 179 megapixels) are part of the same check.
"""

from __future__ import annotations

import io
import warnings

PER_SIDE = 16  # an image may be up to this many times the model's input side, each way
MIN_PIXELS = 1 << 20
PIL_LIMIT = 2 * 89_478_485  # PIL refuses to open anything larger (DecompressionBombError)
LIMIT_HELP = ("images whose header promises more pixels than this are counted as broken and never decoded "
              "[default: (16 x the model's input side)^2, at least 1 megapixel]")


def pixel_limit(image_size: int, given: int | None = None) -> int:
    """The pixel limit for a model that sees image_size x image_size (or the one given)."""
    return given if given else min(PIL_LIMIT, max(MIN_PIXELS, (PER_SIDE * int(image_size)) ** 2))


class BadImage(ValueError):
    """An image that is not used: `reason` is "undecodable" or "over_pixel_limit"."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def decode_rgb(data: bytes, max_pixels: int):
    """The image as an RGB PIL image, decoded only when within `max_pixels`; BadImage otherwise."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides, below
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise BadImage("over_pixel_limit", f"{exc}") from None
        except Exception as exc:  # PIL raises many types for a file that is not an image
            raise BadImage("undecodable", f"{type(exc).__name__}: {exc}") from None
        with im:
            width, height = im.size
            if width * height > max_pixels:
                raise BadImage("over_pixel_limit", f"{width}x{height} is {width * height:,} pixels, above the "
                                                   f"limit of {max_pixels:,} (max_image_pixels)")
            try:
                return im.convert("RGB")
            except Exception as exc:  # truncated data, a broken stream
                raise BadImage("undecodable", f"{type(exc).__name__}: {exc}") from None
