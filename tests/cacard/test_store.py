"""The card directory: it loads back what was written, persists the PIN counter atomically, and
a blocked card stays blocked across restarts."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cacard.applets.containers import DataObjectId
from cacard.card import CardState
from cacard.pin import MAX_ITERATIONS
from cacard.profile import Applications
from cacard.store import (
    CARD_FILE,
    MAX_JSON_FILE,
    STATE_FILE,
    CardInUseError,
    CardStore,
    CredentialFiles,
    NewCard,
    StoreError,
    create,
    write_atomically,
)

from .cards import CARD_ID, PIN_HEX, WRONG_PIN_HEX, credential, hexsw, pin_state, private_key, send

PERSON = bytes.fromhex("01 04") + b"Test" + bytes.fromhex("03 04") + b"User"


def new_store(path: Path, certificates: int = 2) -> CardStore:
    files = [
        CredentialFiles(credential(i).certificate, private_key(i), f"label {i}")
        for i in range(certificates)
    ]
    return create(
        path,
        NewCard(
            files,
            CARD_ID,
            pin_state(),
            data_objects={DataObjectId.PERSON_INSTANCE: PERSON},
            extra_files={"ca.pem": b"not read by the card"},
        ),
    )


def test_a_new_card_loads_back(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    profile = store.load_profile()
    assert profile.card_id == CARD_ID
    assert [c.certificate for c in profile.credentials] == [
        credential(0).certificate,
        credential(1).certificate,
    ]
    assert [c.label for c in profile.credentials] == ["label 0", "label 1"]
    assert profile.data_objects == {DataObjectId.PERSON_INSTANCE: PERSON}
    assert store.load_state().pin.tries_remaining == 3
    assert (tmp_path / "card" / "ca.pem").exists()


def test_keys_and_state_are_private_and_the_pin_is_not_stored(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    assert (store.path.stat().st_mode & 0o777) == 0o700
    assert (store.path / "key-1.pem").stat().st_mode & 0o077 == 0
    assert (store.path / STATE_FILE).stat().st_mode & 0o077 == 0
    assert b"77777777" not in (store.path / STATE_FILE).read_bytes()


def test_the_card_persists_each_pin_try_and_a_blocked_card_stays_blocked(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    card = store.open_card()
    assert hexsw(send(card, "00 20 00 00 08 " + WRONG_PIN_HEX)) == "63C2"
    assert CardStore(store.path).load_state().pin.tries_remaining == 2
    send(card, "00 20 00 00 08 " + WRONG_PIN_HEX)
    send(card, "00 20 00 00 08 " + WRONG_PIN_HEX)
    # A restart: a new process opens the same directory.
    again = CardStore(store.path).open_card()
    assert hexsw(send(again, "00 20 00 00 08 " + PIN_HEX)) == "6983"
    assert hexsw(send(again, "00 20 00 00")) == "6983"


def test_a_right_pin_refill_is_persisted(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    card = store.open_card()
    send(card, "00 20 00 00 08 " + WRONG_PIN_HEX)
    send(card, "00 20 00 00 08 " + PIN_HEX)
    assert CardStore(store.path).load_state().pin.tries_remaining == 3


def test_state_is_written_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    before = set(os.listdir(store.path))
    store.save_state(CardState(pin_state(max_tries=5)))
    assert set(os.listdir(store.path)) == before
    assert store.load_state().pin.max_tries == 5


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file"
    write_atomically(target, b"old")

    def disk_error(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="I/O"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


def test_only_one_process_serves_a_card(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    with store.lock(), pytest.raises(CardInUseError), CardStore(store.path).lock():
        pass
    with CardStore(store.path).lock():
        pass  # free again


def test_a_new_card_needs_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(StoreError, match="empty"):
        new_store(tmp_path / "full")


def edit(store: CardStore, name: str, change: dict[str, object]) -> None:
    path = store.path / name
    document = json.loads(path.read_text())
    document.update(change)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "other"}, "format"),
        ({"version": 3}, "version"),
        ({"card_id": "zz"}, "card_id"),
        ({"card_id": "00"}, "card_id"),
        ({"atr": "3B"}, "atr"),
        ({"credentials": {}}, "credentials"),
        ({"credentials": []}, "credentials"),
        ({"credentials": [{"certificate": "cert-1.pem"}]}, "credentials[0].key"),
        ({"credentials": [{"certificate": "cert-1.pem", "key": "key-2.pem"}]}, "credentials[0]"),
        ({"data_objects": {"0299": "x"}}, "data_objects"),
    ],
)
def test_a_broken_card_file_names_the_field(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    store = new_store(tmp_path / "card")
    edit(store, CARD_FILE, change)
    with pytest.raises(StoreError) as caught:
        store.load_profile()
    assert caught.value.field == field


def test_a_broken_state_file_names_the_field(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    edit(store, STATE_FILE, {"pin": {"kdf": "md5"}})
    with pytest.raises(StoreError) as caught:
        store.load_state()
    assert caught.value.field == "pin.kdf"
    edit(store, STATE_FILE, {"pin": {"kdf": "pbkdf2-hmac-sha256", "salt": "00"}})
    with pytest.raises(StoreError, match="bad PIN state"):
        store.load_state()


def test_a_state_file_asking_for_rounds_without_bound_is_refused(tmp_path: Path) -> None:
    # Every VERIFY would run them: a hand-edited count must not hang the card.
    store = new_store(tmp_path / "card")
    entry = json.loads((store.path / STATE_FILE).read_text())["pin"]
    edit(store, STATE_FILE, {"pin": entry | {"iterations": MAX_ITERATIONS + 1}})
    with pytest.raises(StoreError, match="bad PIN state") as caught:
        store.load_state()
    assert caught.value.field == "pin"


def test_a_card_file_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path / "card")
    (store.path / STATE_FILE).write_bytes(b" " * (MAX_JSON_FILE + 1))
    with pytest.raises(StoreError, match="larger than"):
        store.load_state()


def test_a_directory_without_a_card_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a card directory"):
        CardStore(tmp_path).load_profile()


# -- the PUK of a card with PIV (#15) ------------------------------------------------------------


def new_piv_store(path: Path) -> CardStore:
    files = [CredentialFiles(credential(0).certificate, private_key(0))]
    new = NewCard(
        files, CARD_ID, pin_state(), applications=Applications.PIV, puk=pin_state("12345678")
    )
    return create(path, new)


def test_the_puk_is_kept_beside_the_pin_and_each_write_keeps_the_other(tmp_path: Path) -> None:
    store = new_piv_store(tmp_path / "card")
    puk = store.load_puk()
    assert puk is not None
    assert puk.reference.matches(b"12345678")
    assert "12345678" not in (tmp_path / "card" / STATE_FILE).read_text()
    spent = replace(puk, tries_remaining=1)
    store.save_puk(spent)
    store.save_state(CardState(replace(store.load_state().pin, tries_remaining=2)))
    assert store.load_puk() == spent
    assert store.load_state().pin.tries_remaining == 2
    store.save_states(store.load_state().pin, None)
    assert store.load_puk() is None
    document = json.loads((tmp_path / "card" / STATE_FILE).read_text())
    assert (document["version"], "puk" in document) == (1, False)


def test_a_broken_puk_entry_names_the_field(tmp_path: Path) -> None:
    store = new_piv_store(tmp_path / "card")
    edit(store, STATE_FILE, {"puk": {"kdf": "md5"}})
    with pytest.raises(StoreError) as caught:
        store.load_puk()
    assert (caught.value.field, caught.value.value) == ("puk.kdf", "md5")
    edit(store, STATE_FILE, {"puk": []})
    with pytest.raises(StoreError) as caught:
        store.open_card()
    assert caught.value.field == "puk"


def test_a_cac_card_takes_no_puk(tmp_path: Path) -> None:
    files = [CredentialFiles(credential(0).certificate, private_key(0))]
    with pytest.raises(StoreError) as caught:
        create(tmp_path / "card", NewCard(files, CARD_ID, pin_state(), puk=pin_state()))
    assert (caught.value.field, caught.value.value) == ("profile", "cac")
    assert not (tmp_path / "card").exists()


def test_a_card_its_profile_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    files = [CredentialFiles(credential(0).certificate, private_key(1))]
    with pytest.raises(StoreError, match="does not belong"):
        create(tmp_path / "card", NewCard(files, CARD_ID, pin_state()))
    assert not (tmp_path / "card").exists()
