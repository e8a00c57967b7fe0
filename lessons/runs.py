"""One computation per distinct request, shared by everyone who asks for it, and lanes that keep long runs apart.

A class of 30 opening the same deep link asks for the same pictures 30 times. Here the first request starts the
computation (a `Run`, in a thread of its own) and everyone else *follows* it: a follower gets every item the run
has kept, from the first, then the new ones as they come (`Follower`); a run that finished is kept in a small
LRU and replayed from memory. Followers only wait on the run's condition variable: they hold no compute slot.

Compute slots are `Lane`s, semaphores inside this module (the event's own Gradio limit only bounds how many
learners follow at once): e.g. "short" (2 slots) and "long" (1 slot, for DDPM-1000 and the like). A long run
never takes a short slot, and while any short run computes it steps aside after each of its steps (`share`:
by default it takes at most a quarter of the time), so a short run started behind it is not slowed much.

Rules, all under the run's lock (a `threading.Condition`):
  - a run's items are only appended, and a follower reads them by index, so streams of different keys never
    mix and two followers of one key get the same objects in the same order;
  - a follower that leaves (Stop, a closed tab) only takes itself away; when *every* follower has left, the
    computation stops at its next item and the run is dropped (not cached: it is incomplete), so nobody's CPU
    goes on a picture nobody waits for; the next request for that key starts afresh;
  - a run that fails (an exception in the computation) is dropped too; its followers get a copy of the error;
  - finished runs are cached up to `limit_bytes` (the bytes the items declare), least recently used out first.
    Runs in flight are not counted there: each holds at most what one run keeps, and only the runs holding
    a lane grow.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Hashable, Iterable, Iterator


class _Waiting:
    def __repr__(self) -> str:
        return "WAITING"


# what a follower gets instead of an item when nothing new came for `Follower.wait` seconds: a chance for the
# caller to say "waiting for a free lane" and for Gradio to cancel a stopped follower
WAITING = _Waiting()


class Lane:
    """A named set of compute slots, handed out first come, first served. `yield_to`: lanes whose runs this one
    makes room for (see the module doc)."""

    def __init__(self, name: str, slots: int, yield_to: Iterable["Lane"] = (), share: float = 0.25):
        self.name, self.slots, self.share = name, slots, share
        self.yield_to = list(yield_to)
        self._cond = threading.Condition()
        self._queue: deque = deque()  # the runs waiting for a slot, in arrival order
        self.busy = 0                 # runs holding a slot now

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def acquire(self, poll: float = 0.25, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a slot in turn; every `poll` seconds ask `give_up()` (True: leave the queue, return False)."""
        me = object()
        with self._cond:
            self._queue.append(me)
            try:
                while not (self._queue[0] is me and self.busy < self.slots):
                    if give_up():
                        return False
                    self._cond.wait(poll)
                self.busy += 1
                return True
            finally:
                self._queue.remove(me)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.busy -= 1
            self._cond.notify_all()

    def pause(self, spent: float) -> None:
        """After an item that took `spent` seconds: while a lane we yield to is busy, rest so that we take
        at most `share` of the time (at most a second at once)."""
        if self.yield_to and any(lane.busy for lane in self.yield_to):
            time.sleep(min(1.0, spent * (1 / self.share - 1)))


def default_lanes() -> dict[str, Lane]:
    short = Lane("short", 2)
    return {"short": short, "long": Lane("long", 1, yield_to=[short])}


def _copy(error: BaseException) -> BaseException:
    """A fresh exception like `error` for each follower (one object raised in many threads shares a traceback)."""
    try:
        return type(error)(*error.args)
    except Exception:
        return RuntimeError(str(error))


class Run:
    """One computation's items, in order, for any number of followers."""

    def __init__(self, key: Hashable | None, lane: Lane):
        self.key, self.lane = key, lane
        self.cond = threading.Condition()
        self.items: list[tuple[int, Any]] = []     # the kept items: (sequence number, item)
        self.head: tuple[int, Any] | None = None   # the newest item, kept or not (a live follower shows it)
        self.nbytes = 0                            # what the kept items declared
        self.followers = 0
        self.started = False                       # holds a lane (or is done)
        self.done = False
        self.stopped = False                       # every follower left before the end
        self.error: BaseException | None = None

    def join(self, wait: float = 1.0, crowd: "Crowd | None" = None) -> "Follower | None":
        """A new follower, or None if the run was stopped (the caller starts a new one)."""
        with self.cond:
            if self.stopped or self.error is not None:
                return None
            self.followers += 1
        return Follower(self, wait, crowd)

    def publish(self, item: Any, keep: bool = True, nbytes: int = 0) -> bool:
        """Add the next item; False (and the run is stopped) if nobody follows any more."""
        with self.cond:
            if self.followers == 0:
                self.stopped = True
                self.cond.notify_all()
                return False
            seq = self.head[0] + 1 if self.head else 0
            if keep:
                self.items.append((seq, item))
                self.nbytes += nbytes
            self.head = (seq, item)
            self.cond.notify_all()
            return True

    def alone(self) -> bool:
        """True, and the run is stopped, if nobody follows any more."""
        with self.cond:
            if self.followers == 0:
                self.stopped = True
            return self.stopped

    def end(self, error: BaseException | None = None) -> bool:
        """The computation is over; True if it completed (then it may be cached)."""
        with self.cond:
            if error is not None and not self.stopped:
                self.error = error
            elif not self.stopped:
                self.done = True
            self.cond.notify_all()
            return self.done


class Crowd:
    """How many followers a registry has now, over all its runs (a caller may stream less often when many do)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.n = 0

    def add(self, k: int) -> None:
        with self._lock:
            self.n += k

    def __len__(self) -> int:
        return self.n


class Follower:
    """Iterates one run's items from the first: the kept ones in order, then the newest as it comes.
    `behind`: how many items the run has beyond the one just returned (0: live). Close it when leaving."""

    def __init__(self, run: Run, wait: float = 1.0, crowd: "Crowd | None" = None):
        self.run, self.wait = run, wait
        self._i, self._seq = 0, -1
        self.behind = 0
        self.closed = False
        self.crowd = crowd if crowd is not None else Crowd()
        self.crowd.add(1)

    def __iter__(self) -> "Follower":
        return self

    def __next__(self) -> Any:
        r = self.run
        with r.cond:
            while True:
                if self.closed:
                    raise StopIteration
                if self._i < len(r.items):
                    seq, item = r.items[self._i]
                    self._i += 1
                    break
                if r.head is not None and r.head[0] > self._seq:
                    seq, item = r.head
                    break
                if r.error is not None:
                    self._leave()
                    raise _copy(r.error)
                if r.done or r.stopped:
                    self._leave()
                    raise StopIteration
                if not r.cond.wait(self.wait):
                    return WAITING
            self._seq = seq
            self.behind = r.head[0] - seq
            return item

    def _leave(self) -> None:
        if not self.closed:
            self.closed = True
            self.run.followers -= 1
            self.crowd.add(-1)

    def close(self) -> None:
        with self.run.cond:
            self._leave()
            self.run.cond.notify_all()


class Runs:
    """The registry: runs in flight by key, finished ones in an LRU bounded in bytes, and the lanes."""

    def __init__(self, limit_bytes: int = 64 * 2 ** 20, lanes: dict[str, Lane] | None = None, wait: float = 1.0):
        self.limit_bytes, self.wait = limit_bytes, wait
        self.lanes = default_lanes() if lanes is None else lanes
        self._lock = threading.Lock()
        self._live: dict[Hashable, Run] = {}
        self._done: OrderedDict[Hashable, Run] = OrderedDict()
        self.nbytes = 0            # the cached (finished) runs' bytes
        self.computations = 0      # computations started, ever
        self.crowd = Crowd()       # followers now, over all runs

    def follow(self, key: Hashable | None, compute: Callable[[], Iterable[tuple[Any, bool, int]]],
               first: Callable[[], tuple[Any, int]] | None = None, lane: str = "short") -> Follower:
        """Follow the run for `key`, starting it if there is none: `compute()` yields (item, keep, nbytes) and
        runs in a thread of its own once a slot of `lane` is free. `first()` -> (item, nbytes): made and published
        at once by whoever starts the run (what a follower can show before the run gets a slot). key None: a run
        of its own, never shared."""
        with self._lock:
            if key is not None:
                for table in (self._done, self._live):
                    run = table.get(key)
                    if run is not None:
                        f = run.join(self.wait, self.crowd)
                        if f is not None:
                            if table is self._done:
                                self._done.move_to_end(key)
                            return f
            run = Run(key, self.lanes[lane])
            f = run.join(self.wait, self.crowd)
            if first is not None:
                item, nbytes = first()
                run.publish(item, True, nbytes)
            if key is not None:
                self._live[key] = run
            self.computations += 1
        threading.Thread(target=self._produce, args=(run, compute), daemon=True,
                         name=f"run-{run.lane.name}-{self.computations}").start()
        return f

    def in_lane(self, compute: Callable[[], Iterable[Any]], lane: str = "short", waiting: Any = None) -> Iterator[Any]:
        """`compute()`'s items, computed in a slot of `lane` and never shared (the Reverse tab's "from an image" and
        "DDPM vs DDIM", the latent tab): the same fairness as /sample's runs. Only the newest item reaches a caller
        that reads slower than it is made. While the run waits for a slot, `waiting` is yielded (if not None)."""
        f = self.follow(None, lambda: ((item, False, 0) for item in compute()), None, lane)
        try:
            for item in f:
                if item is WAITING:
                    if waiting is not None:
                        yield waiting
                    continue
                yield item
        finally:
            f.close()

    def _produce(self, run: Run, compute: Callable[[], Iterable[tuple[Any, bool, int]]]) -> None:
        lane, got, error, items = run.lane, False, None, None
        try:
            if not lane.acquire(0.25, run.alone):
                return
            got = True
            with run.cond:
                run.started = True
            items = iter(compute())
            while True:
                t0 = time.perf_counter()
                try:
                    item, keep, nbytes = next(items)
                except StopIteration:
                    break
                if not run.publish(item, keep, nbytes):
                    break
                lane.pause(time.perf_counter() - t0)
        except BaseException as e:     # noqa: BLE001 - handed to the followers
            error = e
        finally:
            if items is not None and hasattr(items, "close"):
                items.close()
            if got:
                lane.release()
            self._retire(run, run.end(error))

    def _retire(self, run: Run, completed: bool) -> None:
        with self._lock:
            if self._live.get(run.key) is run:
                del self._live[run.key]
            if not completed or run.key is None or run.nbytes > self.limit_bytes:
                return
            old = self._done.pop(run.key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._done[run.key] = run
            self.nbytes += run.nbytes
            while self.nbytes > self.limit_bytes:
                _, out = self._done.popitem(last=False)
                self.nbytes -= out.nbytes

    def cached(self) -> list[Hashable]:
        """The finished runs' keys, least recently used first."""
        with self._lock:
            return list(self._done)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._live)


def inline(items: Iterable[tuple[Any, bool, int]]) -> Iterator[Any]:
    """The same items as a Follower would give, computed in the caller's thread (no sharing, no lane)."""
    class _Inline:
        behind = 0

        def __init__(self):
            self._it = iter(items)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._it)[0]

        def close(self):
            if hasattr(self._it, "close"):
                self._it.close()
    return _Inline()
