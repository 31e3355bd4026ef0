"""An S3 source: the models-directory layout under s3://bucket/prefix, through boto3.

    s3://bucket/prefix/<version>/model.cbm
    s3://bucket/prefix/<version>/metadata.json   (uploaded last: a version without it is not a model)
    s3://bucket/prefix/current, candidate, previous   (each holds one version name)

Credentials come from boto3's own chain (environment, shared files, the pod's role), never from our
settings, and no message here carries them. Pointers are read with If-None-Match, so an unchanged
pointer costs a 304 and no body.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from model.registry import METADATA_FILE, MODEL_FILE
from model.sources.base import MissingVersion, SourceError, SourceOptions

_ABSENT = ("NoSuchKey", "404", "NotFound")


def _code(error: ClientError) -> str:
    """The S3 error code of a failed call ("NoSuchKey", "304", ...); "" when it carries none."""
    return error.response.get("Error", {}).get("Code", "")


class S3Source:
    """Models under one S3 prefix."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str, options: SourceOptions):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.label = f"s3://{bucket}/{self.prefix}"
        config = Config(connect_timeout=options.timeout_s, read_timeout=options.timeout_s,
                        retries={"max_attempts": 2, "mode": "standard"})
        self.client = boto3.client("s3", endpoint_url=options.s3_endpoint, config=config)
        self._pointers: dict[str, tuple[str, str | None]] = {}  # key -> (ETag, version) of the last read

    @classmethod
    def from_uri(cls, uri: str, options: SourceOptions) -> "S3Source":
        """The source of an s3://bucket/prefix URI."""
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        return cls(parsed.netloc, parsed.path, options)

    def _key(self, *parts: str) -> str:
        """The object key of parts under the prefix."""
        return "/".join(part for part in (self.prefix, *parts) if part)

    def read_pointer(self, which: str) -> str | None:
        """The version the pointer object names; an unchanged pointer is a 304."""
        key = self._key(which)
        seen = self._pointers.get(key)
        try:
            if seen is None:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            else:
                answer = self.client.get_object(Bucket=self.bucket, Key=key, IfNoneMatch=seen[0])
            version = answer["Body"].read().decode("utf-8").strip() or None
        except ClientError as error:
            code = _code(error)
            if code in ("304", "NotModified") and seen is not None:
                return seen[1]
            if code in _ABSENT:
                self._pointers.pop(key, None)
                return None
            raise SourceError(f"{self.label}: reading {which} failed: {code or error}") from None
        except (BotoCoreError, UnicodeDecodeError) as error:
            raise SourceError(f"{self.label}: reading {which} failed: {error}") from None
        self._pointers[key] = (answer["ETag"], version)
        return version

    def fetch(self, version: str, into: Path) -> dict:
        """Download the version's model file; the metadata its publisher recorded."""
        try:
            # The metadata is uploaded last: without it there is no version, whatever else is there.
            raw = self.client.get_object(Bucket=self.bucket, Key=self._key(version, METADATA_FILE))["Body"].read()
            self.client.download_file(self.bucket, self._key(version, MODEL_FILE), str(into / MODEL_FILE))
        except ClientError as error:
            if _code(error) in _ABSENT:
                raise MissingVersion(f"{self.label} holds no whole version {version}") from None
            raise SourceError(f"{self.label}: downloading {version} failed: {error}") from None
        except BotoCoreError as error:
            raise SourceError(f"{self.label}: downloading {version} failed: {error}") from None
        return json.loads(raw)

    def _holds(self, version: str) -> bool:
        """True when the version's metadata (its last object) is there."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(version, METADATA_FILE))
        except ClientError as error:
            if _code(error) in _ABSENT:
                return False
            raise SourceError(f"{self.label}: looking for {version} failed: {error}") from None
        except BotoCoreError as error:
            raise SourceError(f"{self.label}: looking for {version} failed: {error}") from None
        return True

    def publish(self, model_file: Path, metadata: dict) -> str:
        """Upload the model file, then its metadata: until the metadata is there, the version does not exist."""
        version = metadata["version"]
        if self._holds(version):
            raise FileExistsError(f"{self.label}/{version} exists: a published version is never overwritten")
        try:
            self.client.upload_file(str(model_file), self.bucket, self._key(version, MODEL_FILE))
            self.client.put_object(Bucket=self.bucket, Key=self._key(version, METADATA_FILE),
                                   Body=json.dumps(metadata, indent=2).encode() + b"\n",
                                   ContentType="application/json")
        except (BotoCoreError, ClientError) as error:
            raise SourceError(f"{self.label}: publishing {version} failed: {error}") from None
        return version

    def set_pointer(self, which: str, version: str | None) -> None:
        """Write (or delete) the pointer object; only at a version that is whole."""
        try:
            if version is None:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(which))
                return
            if not self._holds(version):
                raise MissingVersion(f"{self.label} holds no version {version}")
            self.client.put_object(Bucket=self.bucket, Key=self._key(which), Body=f"{version}\n".encode(),
                                   ContentType="text/plain")
        except (BotoCoreError, ClientError) as error:
            raise SourceError(f"{self.label}: moving {which} failed: {error}") from None
