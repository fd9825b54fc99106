"""The feature cache's files: what ``get`` returns is what ``put`` stored, whatever the shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msl_ablate.data.feature_cache import FeatureCache


def test_get_returns_what_put_stored_for_every_shape(tmp_path):
    cache = FeatureCache(tmp_path, "enc")
    stored = {f"{i:064x}": torch.randn(n, d) for i, (n, d) in enumerate([(16, 8), (16, 8), (5, 3)])}
    for digest, features in stored.items():
        cache.put(digest, features)
    for _ in range(2):  # the second read of a header takes the parsed-header path
        for digest, features in stored.items():
            got = cache.get(digest)
            assert got.dtype == torch.float32 and got.shape == features.shape
            torch.testing.assert_close(got, features, rtol=0, atol=0)
    got.add_(1.0)  # writable, and not shared with the next read
    torch.testing.assert_close(cache.get(digest), stored[digest], rtol=0, atol=0)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_file_numpy_wrote_otherwise_reads_as_numpy_reads_it(tmp_path, version):
    cache = FeatureCache(tmp_path, "enc")
    digest = "ab" * 32
    path = cache.path(digest)
    path.parent.mkdir(parents=True)
    array = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, array, version=version)
    np.testing.assert_array_equal(cache.get(digest).numpy(), np.load(path))


def test_a_missing_entry_names_the_cache_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cached vision features .* in .*enc"):
        FeatureCache(tmp_path, "enc").get("cd" * 32)
