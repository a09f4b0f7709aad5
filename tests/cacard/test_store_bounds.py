"""A card directory is read within it and within bounds: card.json names files inside the
directory only, and every file the card reads has a size cap, refused with its size."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from cacard.applets.containers import DataObjectId
from cacard.store import (
    CARD_FILE,
    MAX_CREDENTIAL_FILE,
    MAX_DATA_OBJECT_FILE,
    MAX_JSON_FILE,
    PIV_FILE,
    STATE_FILE,
    CardStore,
    FileTooLargeError,
    StoreError,
)
from cacard.tlv import MAX_LENGTH, TLV, encode

from .test_store import new_store

#: The fields of card.json that name a file, and what each names in a new card.
FILE_FIELDS = {
    "credentials[0].certificate": "cert-1.pem",
    "credentials[0].key": "key-1.pem",
    "data_objects.0200": "person-instance.tlv",
}


def name_in(store: CardStore, field: str, name: str) -> None:
    """Make card.json's ``field`` name ``name``."""
    path = store.path / CARD_FILE
    document = json.loads(path.read_text())
    if field.startswith("credentials"):
        document["credentials"][0][field.rsplit(".", 1)[1]] = name
    else:
        document["data_objects"]["0200"] = name
    path.write_text(json.dumps(document))


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    return new_store(tmp_path / "card")


@pytest.mark.parametrize("field", FILE_FIELDS)
@pytest.mark.parametrize("escape", ["parent", "absolute", "through-subdirectory", "symlink"])
def test_a_file_outside_the_card_directory_is_refused(
    store: CardStore, field: str, escape: str
) -> None:
    """A card.json from elsewhere must not make the card read (and serve to the guest, for a
    data object) any file the process can read."""
    outside = store.path.parent / "outside"
    outside.write_bytes((store.path / FILE_FIELDS[field]).read_bytes())
    name = {
        "parent": "../outside",
        "absolute": str(outside),
        "through-subdirectory": "sub/../../outside",
        "symlink": "link",
    }[escape]
    (store.path / "sub").mkdir()
    (store.path / "link").symlink_to(outside)
    name_in(store, field, name)
    with pytest.raises(StoreError, match="inside the card directory") as raised:
        store.open_card()
    assert (raised.value.field, raised.value.value) == (field, name)
    assert f"{field}={name!r}" in str(raised.value)


@pytest.mark.parametrize("field", FILE_FIELDS)
def test_a_file_in_a_subdirectory_or_through_a_link_inside_still_loads(
    store: CardStore, field: str
) -> None:
    (store.path / "files").mkdir()
    original = store.path / FILE_FIELDS[field]
    (store.path / "files" / "moved").write_bytes(original.read_bytes())
    (store.path / "alias").symlink_to(store.path / "files" / "moved")
    for name in ("files/moved", "./files/moved", "alias"):
        name_in(store, field, name)
        assert store.open_card().atr


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("cert-1.pem", MAX_CREDENTIAL_FILE),
        ("key-1.pem", MAX_CREDENTIAL_FILE),
        ("person-instance.tlv", MAX_DATA_OBJECT_FILE),
        (CARD_FILE, MAX_JSON_FILE),
        (STATE_FILE, MAX_JSON_FILE),
    ],
)
def test_every_file_the_card_reads_is_refused_with_its_size_above_its_cap(
    store: CardStore, name: str, limit: int
) -> None:
    size = limit + 1 + (len(name) % 3)
    (store.path / name).write_bytes(b" " * size)
    with pytest.raises(FileTooLargeError, match="larger than") as raised:
        store.open_card()
    error = raised.value
    assert (error.path, error.size, error.limit) == (store.path / name, size, limit)
    assert str(store.path / name) in str(error)
    assert str(size) in str(error)


def test_a_piv_json_above_its_cap_is_refused_with_its_size(store: CardStore) -> None:
    (store.path / PIV_FILE).write_bytes(b" " * (MAX_JSON_FILE + 5))
    with pytest.raises(FileTooLargeError) as raised:
        store.load_piv()
    assert (raised.value.size, raised.value.limit) == (MAX_JSON_FILE + 5, MAX_JSON_FILE)


def test_the_largest_data_object_a_cac_card_serves_loads(store: CardStore) -> None:
    """One value as long as a V-buffer holds, beside tags as many as a T-buffer holds: the
    cap is what the object's two buffers can carry."""
    content = encode([TLV(0x01, b"\xab" * (MAX_LENGTH - 4))])
    (store.path / "person-instance.tlv").write_bytes(content)
    assert store.load_profile().data_objects[DataObjectId.PERSON_INSTANCE] == content
    assert MAX_DATA_OBJECT_FILE == 2 * MAX_LENGTH


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("field", FILE_FIELDS)
def test_a_name_that_is_no_regular_file_is_refused_without_blocking(
    store: CardStore, field: str
) -> None:
    """A named pipe would block the open (and a device read forever): only regular files."""
    os.mkfifo(store.path / "pipe")
    name_in(store, field, "pipe")
    result: list[BaseException] = []

    def load() -> None:
        try:
            store.load_profile()
        except BaseException as error:  # handed to the test thread
            result.append(error)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(timeout=30)
    assert not loader.is_alive(), "load_profile blocked on a named pipe"
    (error,) = result
    assert isinstance(error, StoreError)
    assert "not a regular file" in str(error)
