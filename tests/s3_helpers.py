"""A local S3 for object-store tests: moto's server on 127.0.0.1 with one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def moto_s3(bucket: str = "indexes") -> Iterator[tuple[Any, dict[str, str]]]:
    """Start moto's S3 server, create ``bucket``; yield (boto3 client, LanceDB storage options).

    Skips the test where moto[server] or boto3 is not installed."""
    pytest.importorskip("moto.server", reason="moto[server] (the S3 emulator) is not installed")
    boto3 = pytest.importorskip("boto3", reason="boto3 is not installed")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
        s3.create_bucket(Bucket=bucket)
        storage = {"aws_endpoint": endpoint, "allow_http": "true", "aws_region": "us-east-1"}
        storage.update(creds)
        yield s3, storage
    finally:
        server.stop()
