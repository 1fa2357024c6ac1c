"""moto's S3 server on 127.0.0.1 for the tests that need object storage.

Everything goes through s3fs and zarr's FsspecStore as it would against a real bucket. The
process's AWS_* environment is replaced while the server runs, so nothing from the real
environment can redirect or authenticate a request; no other address is ever contacted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BUCKET = "bucket"


@contextmanager
def moto_s3(
    scratch: Path,
    *,
    key: str = "testing",
    secret: str = "testing",
    credentials_in_environment: bool = True,
    keep: tuple[str, ...] = (),
) -> Iterator[str]:
    """Start the server on a free port with one empty bucket; yields its endpoint URL.

    The fake ``key``/``secret`` go in the environment unless ``credentials_in_environment``
    is False (then only explicit storage options authenticate). Variables named in ``keep``
    are removed too (e.g. mmpipe's own storage settings)."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_") or name in keep:
                mp.delenv(name)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(scratch / "absent"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "absent"))
        mp.setenv("NO_PROXY", "127.0.0.1")
        mp.setenv("no_proxy", "127.0.0.1")
        if credentials_in_environment:
            mp.setenv("AWS_ACCESS_KEY_ID", key)
            mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1"
            endpoint = f"http://127.0.0.1:{port}"
            boto3.client(
                "s3", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id=key, aws_secret_access_key=secret,
            ).create_bucket(Bucket=BUCKET)  # fmt: skip
            s3fs.S3FileSystem.clear_instance_cache()
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()
