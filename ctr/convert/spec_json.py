"""ctr's own spec as a `ctr convert` format (`ctr`): ContainerSpec.to_dict's JSON, also read
from a record.json or a bundle's ctr-bundle.json, checked as a container's spec is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ctr.convert.conversion import Conversion
from ctr.errors import InvalidSpec
from ctr.spec import ContainerSpec


def read_ctr(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"ctr spec {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidSpec(f"ctr spec {origin or '<stdin>'} is not a JSON object")
    if isinstance(doc.get("spec"), dict):  # a record.json or a bundle's ctr-bundle.json
        doc = doc["spec"]
    conv = Conversion()
    for key, value in doc.items():
        if key in conv.spec:
            conv.spec[key] = value
        else:
            conv.warn(key, "not a field of a ctr spec")
    if conv.spec.get("image"):
        spec = ContainerSpec.from_dict(conv.spec)  # the same checks as for a container
        conv.spec = spec.to_dict()
    return conv


def write_ctr(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    warnings = []
    out = dict(spec)
    if out.get("image"):
        out = ContainerSpec.from_dict(out).to_dict()
    else:
        warnings.append("image: the source names none; set one before using this spec")
    return json.dumps(out, indent=2, sort_keys=True) + "\n", warnings
