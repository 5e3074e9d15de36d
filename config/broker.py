"""Kombu's filesystem transport (the broker that needs no server), safe with several processes.

Kombu 5.7's transport (kombu/transport/filesystem.py) creates a file and then writes into it, and
its readers do not wait for the writer:

- `Channel._put` opens the message file `<time>_<uuid>.<queue>.msg` in the queue folder ("wb",
  so it exists, empty, at once) and only then locks and writes it. `Channel._get` lists the
  folder, moves any file named for its queue and reads it, without taking that lock: a consumer
  polling while a producer writes reads an empty or half-written message, `json.loads` raises
  and the worker stops ("Unrecoverable error: JSONDecodeError"); the rest of the message goes to
  the moved file and is deleted with it. Here a message is written under a name no consumer
  looks for and renamed into place once complete (`os.replace`: atomic on POSIX), so a consumer
  sees no file or the whole file.
- `Channel._queue_bind` checks that an exchange's table (control/<exchange>.exchange) exists
  and, if not, opens it with "wb" (truncating) before it locks it: a `get_table` in between (a
  worker binding its pidbox queue while a client broadcasts a ping) reads "", and two processes
  that bind at once on a fresh broker overwrite each other's table. Here the table is created
  without truncating, read and written under the lock; an empty table is one being created.

config/celery.py points kombu's "filesystem" alias here, so every `filesystem://` URL gets it.
"""

import contextlib
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

PARTIAL_SUFFIX = ".part"  # a message being written: never `<queue>.msg`, so never read


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: written aside, then renamed into place in one step."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        partial = path + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f:
                filesystem.lock(f, filesystem.LOCK_SH)
                try:
                    data = f.read()
                finally:
                    filesystem.unlock(f)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        # Empty: created by a `_queue_bind` that has not locked it yet, i.e. nothing bound yet.
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(data))] if data else []

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # Created if missing, never truncated: whoever locks it first writes it first.
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        with open(fd, "rb+", buffering=0) as f:
            filesystem.lock(f, filesystem.LOCK_EX)
            try:
                data = f.read()
                table = (
                    [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(data))]
                    if data
                    else []
                )
                if entry not in table:
                    table.insert(0, entry)
                    f.seek(0)
                    f.write(str_to_bytes(dumps(table)))
                    f.truncate()
            except OSError as exc:
                raise ChannelError(f"Cannot write {file}") from exc
            finally:
                filesystem.unlock(f)


class Transport(filesystem.Transport):
    Channel = Channel
