"""Display names and schema aliases for the labels of the corpora nluserve trains on."""

from __future__ import annotations

from nluserve.models.manifest import Label

_KNOWN: dict[str, tuple[str, str, list[str]]] = {
    # CLUENER2020
    "address": ("地址", "address", ["地理位置", "地点", "位置", "location", "loc"]),
    "book": ("书名", "book", ["书籍", "图书"]),
    "company": ("公司", "company", ["企业", "公司名"]),
    "game": ("游戏", "game", ["游戏名"]),
    "government": ("政府", "government", ["政府机构", "政府部门"]),
    "movie": ("电影", "movie", ["影视", "电影名"]),
    "name": ("人名", "person name", ["人物", "姓名", "person", "per"]),
    "organization": ("组织机构", "organization", ["机构", "组织", "org"]),
    "position": ("职位", "position", ["职务", "头衔"]),
    "scene": ("景点", "scenic spot", ["景区", "风景区"]),
    # CMeEE-V2
    "bod": ("身体部位", "body part", ["身体", "部位", "body"]),
    "dep": ("科室", "department", ["医院科室", "department"]),
    "dis": ("疾病", "disease", ["病", "疾病名", "disease"]),
    "dru": ("药物", "drug", ["药", "药品", "drug"]),
    "equ": ("医疗设备", "medical equipment", ["设备", "器械", "equipment"]),
    "ite": ("医学检验项目", "medical test item", ["检验项目", "检验", "检查项目"]),
    "mic": ("微生物", "microorganism", ["病原体", "细菌", "病毒"]),
    "pro": ("医疗程序", "medical procedure", ["治疗", "手术", "操作", "procedure"]),
    "sym": ("临床表现", "symptom", ["症状", "体征", "symptom"]),
    # CoNLL-style types of imported checkpoints
    "PER": ("人名", "person", ["人物", "name"]),
    "LOC": ("地点", "location", ["地理位置", "address"]),
    "ORG": ("组织机构", "organization", ["机构", "组织"]),
    "MISC": ("其他", "miscellaneous", []),
    # sentiment
    "positive": ("正面", "positive", ["积极", "好评", "1", "pos"]),
    "negative": ("负面", "negative", ["消极", "差评", "0", "neg"]),
}

SENTIMENT_CODES = {"1": "positive", "0": "negative"}


def label_for(code: str) -> Label:
    """The catalog entry for a label code, or a plain one for labels we do not know."""
    zh, en, aliases = _KNOWN.get(code, (code, code, []))
    return Label(code=code, zh=zh, en=en, aliases=aliases)
