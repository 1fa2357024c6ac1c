"""Where data lives: local paths and fsspec URLs (``s3://``, ``gs://``, ``memory://``...).

One function opens a Zarr group for reading or writing so that every other module is
storage-agnostic. Remote access needs the matching fsspec backend (``pip install mmpipe[s3]``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import zarr
import zarr.abc.store
import zarr.codecs
import zarr.errors
import zarr.storage

from mmpipe.errors import (
    ConfigError,
    MissingDependencyError,
    MmpipeError,
    StorageError,
    StoreNotFoundError,
)
from mmpipe.io.secrets import is_secret_name, resolve_references

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from zarr.abc.buffer import Buffer, BufferPrototype
    from zarr.abc.store import ByteRequest

StorageOptions = dict[str, Any]
MODALITY_COMPRESSORS = (
    zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    zarr.codecs.Crc32cCodec(),
)
"""How mmpipe compresses the modality arrays it writes (``mmpipe synth``, examples). Float
features barely compress, and decoding is most of a chunk's read: a 32 MiB float32 chunk of
the benchmark data reads in 36 ms with Blosc-LZ4 and byte shuffle against 60-70 ms with
Zarr 3's default zstd, for 2% more bytes (0.945 vs 0.927 of raw). The CRC-32C checksum costs
no measurable time per chunk and turns a flipped bit, which Blosc decodes into wrong values
without a word, into an error naming the chunk. Reading accepts any codec."""

_BACKENDS = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_remote(url: str | os.PathLike[str]) -> bool:
    """True for fsspec URLs with a protocol other than ``file``."""
    text = os.fspath(url)
    return "://" in text and not text.startswith("file://")


def describe_location(url: str | os.PathLike[str] | zarr.abc.store.Store) -> str:
    """A printable name for a location (path, URL, or store object)."""
    if isinstance(url, zarr.abc.store.Store):
        return str(url)
    return os.fspath(url)


def _check_backend(url: str) -> None:
    protocol = url.split("://", 1)[0]
    module = _BACKENDS.get(protocol)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"Reading {url!r} needs the {module!r} package: pip install {module}"
            + (" (or pip install 'mmpipe[s3]')" if module == "s3fs" else "")
        ) from exc


S3_ATTEMPTS = 5
"""Attempts per S3 request (the first and 4 retries), botocore "standard" retry mode."""
S3_CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to the object store before that attempt counts as failed."""
S3_READ_TIMEOUT = 15.0
"""Seconds without a byte from the object store before that attempt counts as failed."""
DEADLINE = 120.0
"""Seconds one store operation (a chunk read or write; a listing, up to each next key) may
take with all its retries before it fails with StorageError. ``MMPIPE_STORAGE_DEADLINE``
overrides it (``0``: no deadline)."""
DEADLINE_ENV = "MMPIPE_STORAGE_DEADLINE"
_RETRY_ENV = ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")
_NOT_FOUND = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ClientConnectorError",
        "ConnectionRefusedError",
    }
)
_IO_MODULES = frozenset(
    {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "gcsfs", "adlfs", "azure", "urllib3"}
)
T = TypeVar("T")


def s3_defaults(storage_options: StorageOptions | None) -> StorageOptions:
    """``storage_options`` for s3fs with mmpipe's retry and timeout defaults filled in.

    The defaults go into ``config_kwargs`` (botocore's ``Config``), where the caller's own
    values win key by key:

    - ``retries={"mode": "standard", "total_max_attempts": 5}``: every request (GET, PUT,
      HEAD, LIST) that fails with a 500/502/503/504, a throttling error (SlowDown), a reset
      or refused connection or a timeout is tried again, up to 5 attempts in all, after a
      jittered exponential backoff (up to 1, 2, 4, 8 s). Left out when ``config_kwargs`` has
      ``retries`` or the environment sets ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS``.
    - ``connect_timeout=5``, ``read_timeout=15`` (seconds, per attempt).

    On top of these, s3fs retries a response body cut short and SlowDown errors (its own
    ``S3FileSystem.retries``, 5), and :class:`RemoteStore` bounds every operation by
    :data:`DEADLINE`.
    """
    options = dict(storage_options or {})
    config = dict(options.get("config_kwargs") or {})
    if "retries" not in config and not any(os.environ.get(name) for name in _RETRY_ENV):
        config["retries"] = {"mode": "standard", "total_max_attempts": S3_ATTEMPTS}
    config.setdefault("connect_timeout", S3_CONNECT_TIMEOUT)
    config.setdefault("read_timeout", S3_READ_TIMEOUT)
    options["config_kwargs"] = config
    return options


def storage_deadline() -> float | None:
    """Seconds per store operation (:data:`DEADLINE`, or ``MMPIPE_STORAGE_DEADLINE``)."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return DEADLINE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{DEADLINE_ENV}={text!r} must be a number of seconds (0: no deadline).")
    return value or None


def _endpoint(options: StorageOptions | None) -> str | None:
    options = options or {}
    client = options.get("client_kwargs") or {}
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    return str(endpoint) if endpoint else None


def _attempts(options: StorageOptions | None) -> int | None:
    retries = ((options or {}).get("config_kwargs") or {}).get("retries") or {}
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1
    return None


def _is_storage_failure(exc: BaseException) -> bool:
    """An error of the storage service or the network (not "absent", not a bug of ours)."""
    if isinstance(exc, (MmpipeError, *_NOT_FOUND)):
        return False
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError, PermissionError, EIO...
        return True
    return type(exc).__module__.split(".")[0] in _IO_MODULES


def _unreachable(exc: BaseException) -> bool:
    """A connection that could not be made (refused, reset before an answer, timed out)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & _UNREACHABLE)


def _closing(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a coroutine was being closed (GeneratorExit)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, GeneratorExit):
            return True
        seen.add(id(cause))
        cause = cause.__context__
    return False


def _secrets(options: Any) -> Iterable[str]:
    """Every credential-looking string value in (nested) storage options."""
    if isinstance(options, dict):
        for name, value in options.items():
            if isinstance(value, str) and is_secret_name(str(name)):
                if len(value) >= 4:
                    yield value
            else:
                yield from _secrets(value)


class RemoteStore(zarr.storage.WrapperStore[zarr.abc.store.Store]):
    """A remote store whose failures end as one line: :class:`~mmpipe.errors.StorageError`.

    Retrying is the client library's job (botocore and s3fs, see :func:`s3_defaults`); this
    wrapper only makes sure that what survives the retries ends the run clearly and in
    bounded time:

    - every operation has a deadline (:data:`DEADLINE` seconds, retries included; for a
      listing, up to each next key), so a server that stops answering cannot hang a run
      (s3fs retries around botocore's retries: 45 to 75 unanswered attempts of 15 s each);
    - an error of the service or the network becomes a StorageError naming the URL, the key,
      the endpoint and what to do; never a missing key: only "not found" answers pass
      through as such (zarr reads those as the fill value, and mmpipe's chunk guard as an
      absent chunk), everything else is raised;
    - credentials found in the store's options never appear in a message.
    """

    def __init__(
        self,
        store: zarr.abc.store.Store,
        *,
        url: str,
        endpoint: str | None = None,
        attempts: int | None = None,
        deadline: float | None = DEADLINE,
    ) -> None:
        super().__init__(store)
        self.url = url
        self.endpoint = endpoint
        self.attempts = attempts
        self.deadline = deadline
        self._running: dict[asyncio.Task[Any], None] = {}
        self._stopped: dict[asyncio.Task[Any], StorageError] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_running"], state["_stopped"] = {}, {}  # tasks of this process's event loop
        return state

    def _with_store(self, store: zarr.abc.store.Store) -> RemoteStore:
        return type(self)(
            store,
            url=self.url,
            endpoint=self.endpoint,
            attempts=self.attempts,
            deadline=self.deadline,
        )

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    # -- errors ------------------------------------------------------------------------

    def _failure(self, action: str, key: str, exc: BaseException, *, expired: bool) -> StorageError:
        where = f"{self.url.rstrip('/')}/{key}" if key else self.url
        service = f"the object store at {self.endpoint}" if self.endpoint else "the object store"
        direction = {"write": "to", "delete": "in", "list": "in"}.get(action, "from")
        tries = "after retrying with backoff" + (
            f" ({self.attempts} attempts per request)" if self.attempts else ""
        )
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(reason) > 300:
            reason = reason[:297] + "..."
        if expired:
            message = (
                f"cannot {action} {where} {direction} {service}: no answer within "
                f"{self.deadline:g} s, retries included; check endpoint_url and the network "
                f"(a slow link: raise {DEADLINE_ENV}), then run again"
            )
        elif _unreachable(exc):
            message = (
                f"cannot reach {service} for {self.url} {tries} ({action} {key or '/'}: "
                f"{reason}); check endpoint_url and the network, then run again"
            )
        elif isinstance(exc, PermissionError):
            message = (
                f"cannot {action} {where} {direction} {service}: access denied ({reason}); "
                "check the credentials and the bucket's permissions"
            )
        else:
            message = (
                f"cannot {action} {where} {direction} {service} {tries} ({reason}); check "
                "endpoint_url, the network and the object store's status, then run again"
            )
        fs_options = getattr(getattr(self._store, "fs", None), "storage_options", None)
        for secret in sorted(set(_secrets(fs_options)), key=len, reverse=True):
            message = message.replace(secret, "***")
        error = StorageError(message)
        if isinstance(exc, PermissionError):
            error.transient = False  # the same credentials are refused again on a retry
        return error

    def _stop_others(self, current: asyncio.Task[Any] | None, failure: StorageError) -> None:
        """End the operations running beside a failed one at once, with the same error.

        The run has failed; left alone, their retries would go on behind the error line for
        up to a minute, and at exit Python would report them ("Task was destroyed but it is
        pending!"). Operations started later are not affected (marking the run failed).
        """
        loop = asyncio.get_running_loop()
        for task in list(self._running):
            if task is current or task.done() or task in self._stopped:
                continue
            if task.get_loop() is loop:
                self._stopped[task] = failure
                task.cancel()

    async def _call(self, action: str, key: str, operation: Callable[[], Awaitable[T]]) -> T:
        task = asyncio.current_task()
        if task is not None:
            self._running[task] = None
        scope = asyncio.timeout(self.deadline)
        try:
            async with scope:
                return await operation()
        except asyncio.CancelledError:
            failure = self._stopped.pop(task, None) if task is not None else None
            if task is None or failure is None:
                raise  # cancelled by someone else: let it through
            task.uncancel()
            raise StorageError(str(failure)) from None
        except Exception as exc:
            if _closing(exc):
                # Python is closing this abandoned coroutine (zarr gathers reads and leaves the
                # rest running when one fails; at exit they are garbage collected), and
                # aiobotocore fails to unwind in that foreign context: finish quietly instead
                # of printing "Exception ignored in: <coroutine ...>" tracebacks after the
                # error line.
                raise GeneratorExit from None
            if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
                # The client library refused a storage option (a typo in -S KEY=VALUE).
                option = str(exc).rsplit("argument", 1)[-1].strip()
                raise ConfigError(
                    f"storage option {option} is not accepted for {self.url} ({exc}); check "
                    "the names given with -S / storage_options"
                ) from None
            expired = isinstance(exc, TimeoutError) and scope.expired()
            if not expired and not _is_storage_failure(exc):
                raise
            failure = self._failure(action, key, exc, expired=expired)
            self._stop_others(task, failure)
            raise failure from exc
        finally:
            if task is not None:
                self._running.pop(task, None)

    async def _iterate(
        self, action: str, key: str, items: AsyncIterator[str]
    ) -> AsyncIterator[str]:
        """``items`` with the deadline applied to each step (a page of a listing)."""
        try:
            while True:
                try:
                    item = await self._call(action, key, lambda: anext(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()

    # -- the store interface, each operation through _call -----------------------------

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        return await self._call("read", key, lambda: self._store.get(key, prototype, byte_range))

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        key = key_ranges[0][0] if key_ranges else ""
        return await self._call(
            "read", key, lambda: self._store.get_partial_values(prototype, key_ranges)
        )

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        return await self._call("read", key, lambda: self._store.exists(key))

    async def getsize(self, key: str) -> int:
        return await self._call("read", key, lambda: self._store.getsize(key))

    async def is_empty(self, prefix: str) -> bool:
        return await self._call("list", prefix, lambda: self._store.is_empty(prefix))

    async def set(self, key: str, value: Buffer) -> None:
        await self._call("write", key, lambda: self._store.set(key, value))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await self._call("write", key, lambda: self._store.set_if_not_exists(key, value))

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(key, value) for key, value in values))

    async def delete(self, key: str) -> None:
        await self._call("delete", key, lambda: self._store.delete(key))

    async def delete_dir(self, prefix: str) -> None:
        await self._call("delete", prefix, lambda: self._store.delete_dir(prefix))

    async def clear(self) -> None:
        await self._call("delete", "", self._store.clear)

    def list(self) -> AsyncIterator[str]:
        return self._iterate("list", "", self._store.list())

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        return self._iterate("list", prefix, self._store.list_prefix(prefix))

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        return self._iterate("list", prefix, self._store.list_dir(prefix))


def make_store(
    url: str | os.PathLike[str],
    *,
    mode: Literal["r", "w", "a"] = "r",
    storage_options: StorageOptions | None = None,
) -> zarr.storage.StoreLike:
    """A zarr store for ``url``: LocalStore for paths; for remote URLs an FsspecStore seen
    through a :class:`RemoteStore` (a deadline per operation, one-line StorageError).

    For ``s3://`` URLs the options get mmpipe's retry and timeout defaults
    (:func:`s3_defaults`: botocore "standard" retries, 5 attempts per request with jittered
    exponential backoff, connect timeout 5 s, read timeout 15 s); anything the caller's
    ``storage_options`` set wins.
    """
    text = os.fspath(url)
    read_only = mode == "r"
    if is_remote(text):
        _check_backend(text)
        # Credentials arrive as ${ENV_VAR} references (mmpipe.io.secrets), expanded only here.
        storage_options = resolve_references(storage_options)
        if text.startswith(("s3://", "s3a://")):
            storage_options = s3_defaults(storage_options)
        store = zarr.storage.FsspecStore.from_url(
            text, storage_options=storage_options or {}, read_only=read_only
        )
        return RemoteStore(
            store,
            url=text,
            endpoint=_endpoint(storage_options),
            attempts=_attempts(storage_options),
            deadline=storage_deadline(),
        )
    path = Path(text.removeprefix("file://"))
    if read_only and not path.exists():
        raise StoreNotFoundError(f"No Zarr store at {text!r}: the path does not exist.")
    return zarr.storage.LocalStore(path, read_only=read_only)


def open_group(
    url: str | os.PathLike[str] | zarr.abc.store.Store,
    *,
    path: str = "",
    mode: Literal["r", "w", "a"] = "r",
    storage_options: StorageOptions | None = None,
) -> zarr.Group:
    """Open the Zarr group at ``url`` (and ``path`` inside it).

    Raises StoreNotFoundError when there is no group there, naming the location.
    ``url`` may also be a zarr Store object (e.g. a wrapper that counts reads).
    """
    store = (
        url
        if isinstance(url, zarr.abc.store.Store)
        else make_store(url, mode=mode, storage_options=storage_options)
    )
    try:
        if mode == "r":
            return zarr.open_group(store, path=path, mode="r")
        return zarr.open_group(store, path=path, mode=mode, zarr_format=3)
    except (
        FileNotFoundError,
        zarr.errors.NodeNotFoundError,
        zarr.errors.ContainsArrayError,
    ) as exc:
        where = f"{describe_location(url)!r}" + (f" at path {path!r}" if path else "")
        raise StoreNotFoundError(
            f"No Zarr group found in {where}: give the path of a dataset group "
            "(a folder holding zarr.json and modalities/)."
        ) from exc
