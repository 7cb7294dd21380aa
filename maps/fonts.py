"""The CJK font of the printed atlas.

Chinese text must print as Chinese, never as empty boxes (豆腐块). The atlas uses Noto
Sans CJK SC, which Debian's ``fonts-noto-cjk`` installs as ``NotoSansCJK-Regular.ttc`` /
``-Bold.ttc``; matplotlib ≥ 3.11 reads every face of such a collection, so the
Simplified-Chinese face is chosen by its family name (older versions saw only face 0,
"Noto Sans CJK JP", whose glyphs differ from the mainland forms). When no suitable font is
installed, ``cjk_font`` raises ``FontMissing`` naming the package to install; and while
the atlas draws, ``strict_glyphs`` turns matplotlib's "glyph missing" warning into the
same error, so a character the font lacks stops the run instead of printing a box.

Fonts are embedded as Type 3 (``pdf.fonttype`` 3, with a ToUnicode map, so text can be
searched and copied): the Noto CJK fonts have CFF (PostScript) outlines, which
matplotlib's Type 42 embedding mislabels as TrueType (matplotlib issue #20870; poppler
warns "Mismatch between font type and embedded font file" on every page).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gis_grid.errors import GisGridError

#: Families tried in order: Noto Sans CJK SC (fonts-noto-cjk), its Adobe twin, then other
#: Simplified-Chinese families a Debian or Windows machine may have.
CJK_FAMILIES: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Noto Serif CJK SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
)

#: The Debian package that provides the first family.
FONT_PACKAGE = "fonts-noto-cjk"

#: Parts of the file names of CJK fonts, to find one installed after matplotlib's cache.
_CJK_FILE_TAGS = ("cjk", "wqy", "sourcehan", "msyh")

#: Characters a usable font must have: the atlas's fixed titles.
_PROBE = "物理网点分布图电子机具网格人员及服务秭归县"


class FontMissing(GisGridError):
    """No installed font can print the atlas's Chinese text."""


@dataclass(frozen=True)
class CJKFont:
    """The font the atlas prints with."""

    family: str
    path: str
    index: int = 0
    #: Line height in ems from the font's OS/2 typographic metrics, as matplotlib ≥ 3.11
    #: spaces lines with a numeric ``linespacing``.
    line_height: float = 1.0


def _covers(path: str, index: int, text: str) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        font = FT2Font(path, face_index=index) if index else FT2Font(path)
    except (OSError, RuntimeError, TypeError):
        return False
    charmap = font.get_charmap()
    return all(ord(c) in charmap for c in text)


def _line_height(path: str, index: int) -> float:
    from matplotlib.ft2font import FT2Font

    font = FT2Font(path, face_index=index) if index else FT2Font(path)
    upem = font.get_sfnt_table("head")["unitsPerEm"]
    for table, ascent, descent in (("OS/2", "sTypoAscender", "sTypoDescender"),
                                   ("hhea", "ascent", "descent")):
        metrics = font.get_sfnt_table(table)
        if metrics:
            return (metrics[ascent] - metrics[descent]) / upem
    return 1.2


def _find(families: Sequence[str]) -> CJKFont | None:
    from matplotlib import font_manager

    for family in families:
        for entry in font_manager.fontManager.ttflist:
            if entry.name == family and entry.weight in (400, "normal", "regular") \
                    and entry.style == "normal":
                index = getattr(entry, "index", 0) or 0
                if _covers(entry.fname, index, _PROBE):
                    return CJKFont(family, entry.fname, index, _line_height(entry.fname, index))
    return None


def cjk_font(families: Sequence[str] | None = None) -> CJKFont:
    """The first installed family of ``families`` (default ``CJK_FAMILIES``) that has
    the atlas's Chinese glyphs.

    Raises
    ------
    FontMissing
        None is installed, with the Debian package to install and the cache to clear.
    """
    from matplotlib import font_manager

    wanted = tuple(families) if families is not None else CJK_FAMILIES
    found = _find(wanted)
    if found is None:
        # matplotlib's font cache predates a font installed since (fonts-noto-cjk after
        # the first run): add the system's CJK font files and look again.
        for path in font_manager.findSystemFonts():
            if any(tag in Path(path).name.lower() for tag in _CJK_FILE_TAGS):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        found = _find(wanted)
    if found is not None:
        return found
    raise FontMissing(
        f"no font for Chinese text is installed (looked for {', '.join(wanted)}), and the "
        f"atlas does not print boxes in place of characters. Install one — on Debian: "
        f"`apt-get install {FONT_PACKAGE}` (scripts/setup.sh --test does).")


def rc_params(font: CJKFont) -> dict:
    """matplotlib settings for printing with ``font``: embedded, searchable, repeatable."""
    return {
        "font.family": [font.family],
        "font.size": 8.0,
        "pdf.fonttype": 3,
        "pdf.compression": 1,  # level 6 costs a fifth of the run for 3 % less
        "axes.unicode_minus": False,  # the CJK fonts' own minus sign
        "svg.hashsalt": "gis-grid",
        "path.simplify": True,
    }


@contextmanager
def strict_glyphs() -> Iterator[None]:
    """Within the block, a glyph missing from the font raises ``FontMissing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"Glyph \d+ .*missing from font")
        try:
            yield
        except UserWarning as exc:
            if "missing from font" not in str(exc):
                raise
            raise FontMissing(
                f"the atlas font cannot print a character ({exc}); install {FONT_PACKAGE} "
                "or give a font that has it") from exc
