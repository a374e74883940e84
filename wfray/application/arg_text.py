"""An attempt's arguments as JSON text, on the step's side: blobs fetched (a mapped item of
a list in the blob store reads only its own bytes), collected lists assembled, a paged
fan-out's results read a page at a time through the step services (collected.py)."""

from __future__ import annotations

import json
import typing

from wfray.application.collected import collected_item, collected_text
from wfray.application.messages import ArgSpec
from wfray.application.ports import BlobStore, StepServices
from wfray.domain.results import COLLECTED


def arg_text(spec: ArgSpec, blobs: BlobStore | None, services: StepServices | None = None) -> str:
    """An argument as JSON text, fetching blobs and assembling collected lists."""
    if "json" in spec:
        return typing.cast(str, spec["json"])
    if "blob" in spec:
        if blobs is None:
            raise RuntimeError("a blob argument arrived but no blob store is configured")
        return blobs.get(spec["blob"]).decode()
    if COLLECTED in spec:
        return collected_text(spec[COLLECTED], services, blobs)
    if "list" in spec:
        return "[" + ",".join(arg_text(part, blobs) for part in spec["list"]) + "]"
    if "field" in spec:
        fields = json.loads(arg_text(spec["field"], blobs))
        return json.dumps(fields[spec["name"]], separators=(",", ":"))
    if "item" in spec:
        if COLLECTED in spec["item"]:  # its own result, not the whole fan-out's
            return collected_item(spec["item"][COLLECTED], spec["index"], services, blobs)
        if "blob" in spec["item"] and blobs is not None:  # its own bytes, not the whole list
            return blobs.get_item(spec["item"]["blob"], spec["index"]).decode()
        items = json.loads(arg_text(spec["item"], blobs))
        return json.dumps(items[spec["index"]], separators=(",", ":"))
    if "dict" in spec:
        body = ",".join(
            f"{json.dumps(name)}:{arg_text(part, blobs)}" for name, part in spec["dict"].items()
        )
        return "{" + body + "}"
    raise ValueError(f"unknown argument spec {sorted(spec)}")


def reads_collected(spec: ArgSpec) -> bool:
    """Does this argument read a paged fan-out's results (calls to the step services)?"""
    return COLLECTED in spec or COLLECTED in spec.get("item", ())


def has_field(spec: ArgSpec) -> bool:
    try:
        fields = json.loads(arg_text(spec["field"], None))
    except (RuntimeError, ValueError):
        return True
    return isinstance(fields, dict) and spec["name"] in fields
