"""The ingest: staged blobs published at once, names moved, old blobs collected, stale ingests swept."""

from __future__ import annotations

from pathlib import Path

from ctr.images.archive import import_image
from ctr.images.ingest import Ingest
from ctr.images.store import ImageStore
from tests.unit.images.helpers import GOOD_LAYER, R, entry, files_tar, make_tar, oci_image, oci_layout, write


def test_import_replaces_a_name_and_collects_old_blobs(tmp_path: Path, store: ImageStore) -> None:
    old = store.create("app:1", [make_tar(("old", R, b"o"))])
    manifest, _, blobs = oci_image(GOOD_LAYER)
    [new] = import_image(store, write(tmp_path, "n.tar", files_tar(oci_layout([entry(manifest, name="app:1")], blobs))))
    assert store.get("app:1").digest == new.digest != old.digest
    assert not store.blob_path(old.layer_digests[0]).exists()


def test_stale_ingest_is_swept_but_live_one_kept(store: ImageStore) -> None:
    live = Ingest(store)
    try:
        dead = store.root / ".ingest-dead"
        dead.mkdir()
        (dead / ".lock").touch()
        (dead / "junk").write_bytes(b"x")
        store.create("x:1", [GOOD_LAYER])  # takes the store lock, which sweeps
        assert not dead.exists() and live.dir.exists()
    finally:
        live.close()
    assert not live.dir.exists()
