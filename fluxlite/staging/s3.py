"""s3:// stage-in and stage-out through boto3 (the optional ``s3`` extra).

URLs: ``s3://bucket/key``, or Pegasus's ``s3://profile@site/bucket/key`` (the part before
the ``@`` names an AWS profile; the site name is not used: the endpoint comes from the
environment). The endpoint is taken from ``FLUXLITE_S3_ENDPOINT_URL``, then
``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``; credentials and region from the
standard AWS chain (environment, shared files, instance roles).

An object written by a job becomes visible only when it is complete: a small object is
one PUT at commit; a large one is a multipart upload completed at commit and aborted on
any failure, so no reader ever sees a partial object.
"""

from __future__ import annotations

import logging
import os
import threading
from urllib.parse import unquote, urlsplit

from fluxlite.errors import StageError
from fluxlite.staging.base import Backend, Cancelled, RateCheck
from fluxlite.urls import redact

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

PART_SIZE = 16 * 1024 * 1024  # above S3's 5 MiB minimum; 10000 parts allow 160 GiB objects
_MISSING = ("NoSuchKey", "NoSuchBucket", "404", "NotFound")
_PERMANENT = ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
              "InvalidBucketName", "AllAccessDisabled", "400", "InvalidRequest")


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as err:
        raise StageError("s3:// needs boto3: install fluxlite with the s3 extra "
                         "(pip install 'fluxlite-runtime[s3]')", permanent=True) from err
    return boto3


def parse(url: str) -> tuple[str | None, str, str]:
    """(profile, bucket, key) of an s3:// URL."""
    p = urlsplit(url)
    path = unquote(p.path)
    if "@" in p.netloc:
        profile = unquote(p.netloc.split("@", 1)[0]) or None
        bucket, _, key = path.lstrip("/").partition("/")
    else:
        profile, bucket, key = None, p.netloc, path.lstrip("/")
    if not bucket:
        raise StageError(f"{redact(url)}: no bucket in the URL", permanent=True)
    return profile, bucket, key


def endpoint_url() -> str | None:
    """The S3 endpoint named in the environment, or None for AWS's own."""
    for var in ("FLUXLITE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


class S3Error(StageError):
    """An S3 request that failed; ``missing`` when the bucket or key does not exist."""

    def __init__(self, message: str, permanent: bool = False, missing: bool = False) -> None:
        super().__init__(message, permanent=permanent, missing=missing)


def _wrap(url: str, what: str, err: Exception) -> S3Error:
    from botocore.exceptions import ClientError

    code = ""
    if isinstance(err, ClientError):  # the service's answer, with its error code
        code = str(err.response.get("Error", {}).get("Code", ""))
    missing = code in _MISSING
    permanent = missing or code in _PERMANENT
    detail = code or type(err).__name__
    msg = str(err) if not code else detail
    if code and code != msg:
        detail = f"{code}: {msg}"
    return S3Error(f"{redact(url)}: {what}: {detail}", permanent=permanent, missing=missing)


class S3Backend(Backend):
    """s3:// URLs through boto3, one client per profile."""

    def __init__(self) -> None:
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def client(self, profile: str | None) -> Any:
        """The boto3 S3 client of a profile (None: the default), made once."""
        with self._lock:
            c = self._clients.get(profile)
            if c is None:
                boto3 = _boto3()
                from botocore.config import Config

                session = boto3.session.Session(profile_name=profile) if profile else \
                    boto3.session.Session()
                cfg = Config(retries={"max_attempts": 2, "mode": "standard"},
                             max_pool_connections=32)
                c = session.client("s3", endpoint_url=endpoint_url(), config=cfg)
                self._clients[profile] = c
            return c

    def open_read(self, url: str, *, tls_verify: bool = True, timeout: float = 60.0,
                  cancel: threading.Event | None = None, min_rate: float = 0.0,
                  rate_window: float = 0.0) -> _S3Reader:
        """Open an S3 object for reading (GET), under the attempt's minimum rate."""
        profile, bucket, key = parse(url)
        client = self.client(profile)
        try:
            obj = client.get_object(Bucket=bucket, Key=key)
        except Exception as err:  # noqa: BLE001 - botocore errors have no common base
            raise _wrap(url, "cannot read", err) from err
        rate = RateCheck(min_rate, rate_window) if min_rate > 0 and rate_window > 0 else None
        return _S3Reader(url, obj, cancel, rate)

    def open_write(self, url: str, size: int | None) -> _S3Writer:
        """A writer that puts the object (multipart when large): visible only on commit."""
        profile, bucket, key = parse(url)
        if not key or key.endswith("/"):
            raise S3Error(f"{redact(url)}: no object key in the URL", permanent=True)
        return _S3Writer(url, self.client(profile), bucket, key)

    # used by `fluxlite transfer` for its mkdir and remove entries
    def remove(self, url: str, recursive: bool = False) -> None:
        """Delete an object, or every object under a prefix (``recursive``)."""
        profile, bucket, key = parse(url)
        client = self.client(profile)
        try:
            if not recursive:
                client.delete_object(Bucket=bucket, Key=key)
                return
            prefix = key.rstrip("/") + "/" if key else ""
            if key:
                client.delete_object(Bucket=bucket, Key=key)
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys,
                                                                 "Quiet": True})
        except Exception as err:  # noqa: BLE001
            raise _wrap(url, "cannot remove", err) from err


class _S3Reader:
    def __init__(self, url: str, obj: dict[str, Any], cancel: threading.Event | None,
                 rate: RateCheck | None = None) -> None:
        self.url = url
        self.size: int | None = obj.get("ContentLength")
        self._body = obj["Body"]
        self._cancel = cancel
        self._rate = rate
        self._total = 0
        # urllib3's read1 returns what one receive brought instead of waiting for a whole
        # buffer, so a trickling server meets the rate check while its bytes arrive
        raw = getattr(self._body, "_raw_stream", None)
        self._read = getattr(raw, "read1", None) if rate is not None else None

    def readinto(self, buf: bytearray | memoryview) -> int:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()
        try:
            data = self._read(len(buf)) if self._read is not None else self._body.read(len(buf))
        except Exception as err:  # noqa: BLE001
            raise _wrap(self.url, "read failed", err) from err
        n = len(data)
        buf[:n] = data
        self._total += n
        if self._rate is not None:
            slow = self._rate.update(self._total)
            if slow is not None:
                raise S3Error(f"{redact(self.url)}: too slow: {slow}")
        return n

    def close(self) -> None:
        try:
            self._body.close()
        except Exception as err:  # noqa: BLE001 - closing a broken stream must not hide the error
            logger.debug("s3 stream close: %s", err)


class _S3Writer:
    """All-or-nothing: nothing is visible under the key before commit()."""

    def __init__(self, url: str, client: Any, bucket: str, key: str) -> None:
        self.url, self.client, self.bucket, self.key = url, client, bucket, key
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: memoryview) -> None:
        self._buf += data  # a copy: the caller reuses its buffer
        while len(self._buf) >= PART_SIZE:
            self._part(bytes(self._buf[:PART_SIZE]))
            del self._buf[:PART_SIZE]

    def _part(self, body: bytes) -> None:
        try:
            if self._upload_id is None:
                up = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
                self._upload_id = up["UploadId"]
            n = len(self._parts) + 1
            r = self.client.upload_part(Bucket=self.bucket, Key=self.key, PartNumber=n,
                                        UploadId=self._upload_id, Body=body)
            self._parts.append({"PartNumber": n, "ETag": r["ETag"]})
        except Exception as err:  # noqa: BLE001
            raise _wrap(self.url, "upload failed", err) from err

    def commit(self) -> str:
        try:
            if self._upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buf))
            else:
                if self._buf:
                    self._part(bytes(self._buf))
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts})
                self._upload_id = None
        except S3Error:
            raise
        except Exception as err:  # noqa: BLE001
            raise _wrap(self.url, "upload failed", err) from err
        self._buf = bytearray()
        return self.url

    def abort(self) -> None:
        self._buf = bytearray()
        if self._upload_id is None:
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                               UploadId=self._upload_id)
        except Exception as err:  # noqa: BLE001 - the original failure is what matters
            logger.warning("%s: could not abort the multipart upload: %s", redact(self.url),
                           err)
        self._upload_id = None
