"""Names for generated people and places: person names, and townships, villages and
communities as people and addresses write them.
"""

from __future__ import annotations

import numpy as np

_SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田"
                  "董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟"
                  "熊秦邱江尹向覃")
_GIVEN = tuple("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅辉鑫婷建国志"
               "海燕春雪飞鹏宇浩然欣怡晨阳文斌俊凯佳琪丹慧云峰亮成林")


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    surname = rng.choice(np.array(_SURNAMES, dtype=object), n)
    first = rng.choice(np.array(_GIVEN, dtype=object), n)
    second = rng.choice(np.array(_GIVEN, dtype=object), n)
    two = rng.random(n) < 0.7
    return np.where(two, surname + first + second, surname + first)


def _town_short(name: str) -> str:
    """茅坪镇 → 茅坪, 城东街道办事处 → 城东, 水田坝乡 → 水田坝."""
    for suffix in ("街道办事处", "街道", "镇", "乡"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


def _town_name(name: str) -> str:
    """The township as addresses write it: 城东街道办事处 → 城东街道."""
    return name.removesuffix("办事处")


def _place_name(name: str) -> str:
    """The village or community as people say it: 杨贵店村村委会 → 杨贵店村,
    上叶村委会 → 上叶村, 滨湖居委会 → 滨湖社区, 乐怡社区 → 乐怡社区."""
    for suffix, noun in (("村民委员会", "村"), ("村委会", "村"), ("居民委员会", "社区"),
                         ("社区居委会", "社区"), ("居委会", "社区")):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem if stem.endswith(noun) else stem + noun
    return name


def _town_name_array(names: np.ndarray) -> np.ndarray:
    return np.array([_town_name(t) for t in names], dtype=object)
