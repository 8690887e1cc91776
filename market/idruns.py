"""Compact memory of trade ids: sorted runs of consecutive integers, kept per closed 1m window.

An exchange numbers the trades of one instrument with increasing, mostly consecutive ids, so the ids of
a minute are typically one run or a few: two ``array('q')`` of run starts and ends hold them in a few
bytes each instead of a Python int plus a set entry per id (docs/candles.md, "Duplicates and dedup
retention"). Ids must fit a signed 64-bit integer (the boundary's plausibility check guarantees
1..2^63-1); any set of such ints is held exactly, however scattered (then as runs of one).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator

BELOW_ALL = -(2**63) - 1
"""Smaller than every id: the ``high`` of an empty ``ClosedIds``."""


class IdRuns:
    """A set of integers held as sorted, disjoint, non-adjacent runs ``[start, end]`` (ends inclusive)."""

    __slots__ = ("starts", "ends")

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.starts, self.ends = array("q"), array("q")
        self._extend_sorted(sorted(set(ids)))

    @classmethod
    def of_distinct(cls, ids: list[int]) -> IdRuns:
        """The runs of ``ids``, which must be distinct (the list is sorted in place): no set is built,
        and sorted distinct ids spanning exactly their count (a minute of a feed) are one run at once."""
        runs = cls.__new__(cls)
        runs.starts, runs.ends = array("q"), array("q")
        ids.sort()  # about n comparisons: a feed's ids arrive nearly in order
        if ids and ids[-1] - ids[0] + 1 == len(ids):
            runs.starts.append(ids[0])
            runs.ends.append(ids[-1])
        else:
            runs._extend_sorted(ids)
        return runs

    def _extend_sorted(self, ordered: list[int]) -> None:
        """Append the runs of ``ordered`` (increasing, above every id held), found by galloping: a run
        of n ids costs about 2 log2(n) steps, so a minute of consecutive ids is found in a few dozen."""
        starts, ends = self.starts, self.ends
        n, i = len(ordered), 0
        while i < n:
            first = ordered[i]
            # ordered[k] - first == k - i exactly while ids i..k are consecutive (they increase)
            last, step = i, 1
            while last + step < n and ordered[last + step] - first == last + step - i:
                last += step
                step *= 2
            high = min(last + step, n) - 1
            while last < high:  # the run ends in (last, high]: binary search
                mid = (last + high + 1) // 2
                if ordered[mid] - first == mid - i:
                    last = mid
                else:
                    high = mid - 1
            starts.append(first)
            ends.append(ordered[last])
            i = last + 1

    def __contains__(self, tid: int) -> bool:
        i = bisect_right(self.starts, tid) - 1
        return i >= 0 and tid <= self.ends[i]

    def add(self, tid: int) -> bool:
        """Hold ``tid`` too; False if it was held already."""
        starts, ends = self.starts, self.ends
        i = bisect_right(starts, tid) - 1  # the run starting at or before tid, if any
        if i >= 0 and tid <= ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == tid - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == tid + 1
        if joins_left and joins_right:  # tid fills the hole between two runs
            ends[i] = ends[i + 1]
            del starts[i + 1]
            del ends[i + 1]
        elif joins_left:
            ends[i] = tid
        elif joins_right:
            starts[i + 1] = tid
        else:
            starts.insert(i + 1, tid)
            ends.insert(i + 1, tid)
        return True

    def __len__(self) -> int:
        return sum(self.ends) - sum(self.starts) + len(self.starts)

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self.starts, self.ends, strict=True):
            yield from range(start, end + 1)

    @property
    def runs(self) -> int:
        return len(self.starts)

    @property
    def low(self) -> int:
        """The smallest id held (raises IndexError when empty)."""
        return self.starts[0]

    @property
    def high(self) -> int:
        """The largest id held (raises IndexError when empty)."""
        return self.ends[-1]

    def copy(self) -> IdRuns:
        clone = IdRuns.__new__(IdRuns)
        clone.starts = array("q", self.starts)
        clone.ends = array("q", self.ends)
        return clone


class ClosedIds:
    """The remembered trade ids of closed 1m windows, by minute number, forgotten a minute at a time.

    ``high`` is the largest id held (``BELOW_ALL`` when none): a new trade's id above it, the common
    case, is known absent without a search; an id at or below it is looked up in the minutes whose
    runs span it.
    """

    __slots__ = ("_minutes", "high")

    def __init__(self) -> None:
        self._minutes: dict[int, IdRuns] = {}
        self.high = BELOW_ALL

    def close(self, minute: int, ids: list[int]) -> None:
        """Remember ``ids`` (distinct, none held already; the list is sorted in place) as trades of the
        (closed) window ``minute``."""
        runs = self._minutes.get(minute)
        if runs is None:
            runs = IdRuns.of_distinct(ids)
            if not runs.runs:
                return
            self._minutes[minute] = runs
        else:
            for tid in ids:
                runs.add(tid)
        self.high = max(self.high, runs.high)

    def add(self, minute: int, tid: int) -> None:
        """Remember one more trade of the closed window ``minute`` (a late trade)."""
        runs = self._minutes.get(minute)
        if runs is None:
            self._minutes[minute] = IdRuns((tid,))
        else:
            runs.add(tid)
        if tid > self.high:
            self.high = tid

    def __contains__(self, tid: int) -> bool:
        if tid > self.high:
            return False
        for runs in self._minutes.values():
            if runs.starts[0] <= tid <= runs.ends[-1] and tid in runs:
                return True
        return False

    def forget(self, horizon: int) -> None:
        """Forget the ids of every minute before ``horizon``."""
        minutes = self._minutes
        stale = [minute for minute in minutes if minute < horizon]
        if stale:
            for minute in stale:
                del minutes[minute]
            self.high = max((runs.high for runs in minutes.values()), default=BELOW_ALL)

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._minutes.values())

    @property
    def runs(self) -> int:
        """How many runs hold the ids (a measure of their memory: 16 bytes each)."""
        return sum(runs.runs for runs in self._minutes.values())

    def minutes(self) -> dict[int, frozenset[int]]:
        """Every id held, by minute (for inspection and tests; not for the hot path)."""
        return {minute: frozenset(runs) for minute, runs in self._minutes.items()}

    def __deepcopy__(self, memo: dict[int, object]) -> ClosedIds:
        clone = ClosedIds.__new__(ClosedIds)
        clone._minutes = {minute: runs.copy() for minute, runs in self._minutes.items()}
        clone.high = self.high
        memo[id(self)] = clone
        return clone
