"""Finished media in S3-compatible object storage (`ONAIR_STORAGE_URL=s3://bucket/prefix`), through boto3.

The video library keeps its layout (`videos/{slug}/...`, `clips/{id}/...`) as object keys under the prefix, so
any node serves what another node finished. The calls are boto3's blocking ones, run in worker threads; boto3
is imported only when storage is configured (a single node on local disk never loads it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ObjectStore", "StoredObject"]

log = logging.getLogger("onair.store.objects")

CHUNK = 1024 * 1024


@dataclass
class StoredObject:
    """One object's answer to a GET: status 200 or 206 (a range), its headers, and its bytes as they come."""

    status: int
    headers: dict[str, str]
    body: Any  # botocore's StreamingBody

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(self.body.read, CHUNK):
                yield chunk
        finally:
            self.body.close()


class ObjectStore:
    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("the storage URL must be s3://bucket[/prefix]")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=os.environ.get("AWS_REGION"),
                                    config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        from botocore.exceptions import BotoCoreError, ClientError

        self.errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def upload_dir(self, directory: Path, name: str) -> int:
        """Every file under `directory` to `name/...`; returns how many. Raises when one cannot be stored."""
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        for path in files:
            key = self.key(f"{name}/{path.relative_to(directory).as_posix()}")
            await asyncio.to_thread(self._client.upload_file, str(path), self.bucket, key)
        log.info("stored in object storage", extra={"objects": name, "files": len(files)})
        return len(files)

    async def get(self, name: str, byte_range: str | None = None) -> StoredObject | None:
        """The object `name` (a `Range` header value passes through), None when there is none."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if byte_range:
            args["Range"] = byte_range
        try:
            answer = await asyncio.to_thread(self._client.get_object, **args)
        except self.errors as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code == "InvalidRange":
                return StoredObject(416, {}, None)
            raise
        headers = {"Content-Length": str(answer["ContentLength"]), "Accept-Ranges": "bytes"}
        if answer.get("ContentRange"):
            headers["Content-Range"] = str(answer["ContentRange"])
        return StoredObject(206 if answer.get("ContentRange") else 200, headers, answer["Body"])

    async def delete_dir(self, name: str) -> None:
        """Every object under `name/`."""
        prefix = self.key(name) + "/"

        def delete() -> None:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

        await asyncio.to_thread(delete)
