//! Versions: a hybrid logical clock value plus the id of the writer that issued it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bits of an [`Hlc`] that hold the logical counter.
const LOGICAL_BITS: u32 = 16;

/// A hybrid logical clock value: milliseconds since the Unix epoch in the upper 48 bits and a logical
/// counter in the lower 16.
///
/// Packing both into one `u64` makes the clock's order the integer order, so "newer" is a plain
/// comparison here, in the stored envelope (big-endian) and in the server-side script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

impl Hlc {
    /// The largest millisecond value an `Hlc` holds (2^48 − 1, in the year 10889).
    pub const MAX_MILLIS: u64 = (1 << 48) - 1;

    /// An `Hlc` from its two parts; milliseconds above [`Hlc::MAX_MILLIS`] are clamped to it.
    pub fn new(millis: u64, logical: u16) -> Hlc {
        Hlc((millis.min(Self::MAX_MILLIS) << LOGICAL_BITS) | u64::from(logical))
    }

    /// An `Hlc` from its packed 64-bit form.
    pub const fn from_raw(raw: u64) -> Hlc {
        Hlc(raw)
    }

    /// The packed 64-bit form (the order of these integers is the clock's order).
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter, which orders events issued within the same millisecond.
    pub const fn logical(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }

    /// The wall-clock time of the physical part.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis())
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

/// Who issued a version. It breaks ties between equal clock values from different processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WriterId(pub u64);

impl WriterId {
    /// A random writer id, different in every process with overwhelming probability.
    pub fn random() -> WriterId {
        // `RandomState` is seeded from the operating system's randomness once per process; hashing the
        // process id and the time on top keeps two processes apart even if their seeds collided.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        WriterId(hasher.finish())
    }
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The version of a stored value: ordered by clock value first, then by writer id.
///
/// Two writers can produce the same [`Hlc`] in the same millisecond; the writer id makes their versions
/// differ, so last-write-wins always has exactly one winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// When the write was issued.
    pub hlc: Hlc,
    /// Who issued it.
    pub writer: WriterId,
}

impl Version {
    /// Bytes of [`Version::to_bytes`].
    pub const LEN: usize = 16;

    /// A version from its parts.
    pub const fn new(hlc: Hlc, writer: WriterId) -> Version {
        Version { hlc, writer }
    }

    /// `hlc` then `writer`, both big-endian, so that comparing these bytes compares versions.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.hlc.as_raw().to_be_bytes());
        out[8..].copy_from_slice(&self.writer.0.to_be_bytes());
        out
    }

    /// The inverse of [`Version::to_bytes`].
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Version {
        let (hlc, writer) = bytes.split_at(8);
        let word = |part: &[u8]| u64::from_be_bytes(part.try_into().unwrap_or([0; 8]));
        Version {
            hlc: Hlc::from_raw(word(hlc)),
            writer: WriterId(word(writer)),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.hlc, self.writer)
    }
}

/// Where a [`Clock`] reads physical time from.
enum TimeSource {
    System,
    Custom(Arc<dyn Fn() -> u64 + Send + Sync>),
}

/// A hybrid logical clock: every [`Clock::now`] is strictly greater than the one before, even when the
/// wall clock steps back, and stays close to the wall clock otherwise.
///
/// One clock per process ([`Clock::global`]) is enough: it is lock-free and shared by every handle.
pub struct Clock {
    last: AtomicU64,
    source: TimeSource,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            TimeSource::System => "system",
            TimeSource::Custom(_) => "custom",
        };
        f.debug_struct("Clock")
            .field("last", &self.last())
            .field("source", &source)
            .finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock reading the system's wall clock.
    pub fn new() -> Clock {
        Clock {
            last: AtomicU64::new(0),
            source: TimeSource::System,
        }
    }

    /// A clock reading milliseconds since the Unix epoch from `millis` (for tests and simulations).
    pub fn with_time_source(millis: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            source: TimeSource::Custom(Arc::new(millis)),
        }
    }

    /// The process-wide clock, so that every handle in this process issues increasing values.
    pub fn global() -> &'static Clock {
        static GLOBAL: OnceLock<Clock> = OnceLock::new();
        GLOBAL.get_or_init(Clock::new)
    }

    fn physical(&self) -> Hlc {
        let millis = match &self.source {
            TimeSource::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            TimeSource::Custom(read) => read(),
        };
        Hlc::new(millis, 0)
    }

    /// The next value: the wall clock if it is ahead of every value issued so far, else the last value
    /// plus one logical tick (which carries into the milliseconds after 65,535 ticks).
    ///
    /// The clock never stalls on a value it was handed: [`Clock::observe`] adopts only values within
    /// a drift bound of the wall clock, so the last value stays within that bound (plus the ticks
    /// issued since) and the top of the range (the year 10889) is out of reach unless the wall clock
    /// itself reads that year. Only then would the value stop growing; it never wraps.
    pub fn now(&self) -> Hlc {
        let physical = self.physical().as_raw();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last.checked_add(1).unwrap_or(last));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Hlc::from_raw(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// How far `seen` lies ahead of this clock's wall-clock time, if it lies beyond what this clock
    /// accepts: more than `max_drift` ahead of the wall clock and ahead of every value this clock has
    /// issued or adopted (a value at or below those is this process's own history, never a threat).
    /// `None` when it is acceptable; exactly at the bound counts as acceptable.
    pub fn beyond_drift(&self, seen: Hlc, max_drift: Duration) -> Option<Duration> {
        let wall = self.physical().millis();
        let drift = u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX);
        let bound = Hlc::new(wall.saturating_add(drift), u16::MAX).max(self.last());
        (seen > bound).then(|| Duration::from_millis(seen.millis().saturating_sub(wall)))
    }

    /// Takes note of a value seen elsewhere (for example the newer version that refused a write), so
    /// that every later [`Clock::now`] is greater than it, but only if [`Clock::beyond_drift`] accepts
    /// it. A value further ahead comes from a host whose clock is wrong (or from a caller's made-up
    /// version); adopting it would drag every later value of this process along, up to the end of
    /// the range where the clock could no longer move, so it is refused: `Err` carries how far ahead
    /// of the wall clock it was, and nothing is adopted.
    ///
    /// The bound is measured from the wall clock, not from the last adopted value, so repeated
    /// observations cannot ratchet the clock forward one bound at a time.
    pub fn observe(&self, seen: Hlc, max_drift: Duration) -> Result<(), Duration> {
        if let Some(ahead_by) = self.beyond_drift(seen, max_drift) {
            return Err(ahead_by);
        }
        self.last.fetch_max(seen.as_raw(), Ordering::AcqRel);
        Ok(())
    }

    /// The last value issued or observed.
    pub fn last(&self) -> Hlc {
        Hlc::from_raw(self.last.load(Ordering::Acquire))
    }
}

/// A version made from plain numbers, for this crate's tests.
#[cfg(test)]
pub(crate) fn test_version(millis: u64, logical: u16, writer: u64) -> Version {
    Version::new(Hlc::new(millis, logical), WriterId(writer))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;

    fn check(millis: u64, logical: u16, want_raw: u64, want_display: &str) {
        let hlc = Hlc::new(millis, logical);
        assert_eq!(hlc.as_raw(), want_raw, "raw of ({millis}, {logical})");
        assert_eq!(hlc.to_string(), want_display);
        assert_eq!(hlc.millis(), millis.min(Hlc::MAX_MILLIS));
        assert_eq!(hlc.logical(), logical);
    }

    #[test]
    fn hlc_packs_millis_above_the_counter() {
        check(0, 0, 0, "0.0");
        check(1, 0, 1 << 16, "1.0");
        check(1, 7, (1 << 16) | 7, "1.7");
        check(
            1_700_000_000_000,
            65_535,
            (1_700_000_000_000 << 16) | 0xFFFF,
            "1700000000000.65535",
        );
        check(u64::MAX, 3, (Hlc::MAX_MILLIS << 16) | 3, "281474976710655.3");
    }

    #[test]
    fn version_bytes_round_trip_and_order_like_versions() {
        let a = Version::new(Hlc::new(5, 1), WriterId(9));
        let b = Version::new(Hlc::new(5, 1), WriterId(10));
        let c = Version::new(Hlc::new(5, 2), WriterId(0));
        for v in [a, b, c] {
            assert_eq!(Version::from_bytes(v.to_bytes()), v);
        }
        assert!(a < b && b < c);
        assert!(a.to_bytes() < b.to_bytes() && b.to_bytes() < c.to_bytes());
        assert_eq!(a.to_string(), "5.1@0000000000000009");
    }

    #[test]
    fn the_counter_carries_into_the_milliseconds_when_time_stands_still() {
        let clock = Clock::with_time_source(|| 10);
        let mut last = clock.now();
        assert_eq!(last, Hlc::new(10, 0));
        for _ in 0..70_000 {
            let next = clock.now();
            assert!(next > last);
            last = next;
        }
        assert_eq!(last, Hlc::new(11, (70_000 - 65_536) as u16));
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn observe_moves_the_clock_past_a_remote_value() {
        let clock = Clock::with_time_source(|| 100);
        let remote = Hlc::new(500, 3);
        clock.observe(remote, MINUTE).unwrap();
        assert_eq!(clock.now(), Hlc::new(500, 4));
        // An older observation changes nothing.
        clock.observe(Hlc::new(1, 0), MINUTE).unwrap();
        assert_eq!(clock.now(), Hlc::new(500, 5));
    }

    /// One observation against a wall clock at 1,000,000 ms and a one-minute bound: whether it is
    /// adopted (`None`) or refused with how far ahead it was, and the value `now` gives next.
    fn check_observe(seen: Hlc, want_refused: Option<Duration>, want_next: Hlc) {
        let clock = Clock::with_time_source(|| 1_000_000);
        let got = clock.observe(seen, MINUTE).err();
        assert_eq!(got, want_refused, "observing {seen}");
        assert_eq!(clock.beyond_drift(seen, MINUTE), want_refused);
        assert_eq!(clock.now(), want_next, "after observing {seen}");
    }

    #[test]
    fn observations_beyond_the_drift_bound_are_refused_and_not_adopted() {
        let wall = Hlc::new(1_000_000, 0);
        // Within the bound: adopted.
        check_observe(Hlc::new(1_030_000, 7), None, Hlc::new(1_030_000, 8));
        // Exactly at the bound, with any counter: adopted.
        check_observe(Hlc::new(1_060_000, 65_535), None, Hlc::new(1_060_001, 0));
        // One millisecond beyond: refused, the clock stays on the wall clock.
        check_observe(Hlc::new(1_060_001, 0), Some(Duration::from_millis(60_001)), wall);
        // Far ahead and the very top of the range: refused.
        check_observe(
            Hlc::new(1_000_000 + 365 * 86_400_000, 0),
            Some(Duration::from_millis(365 * 86_400_000)),
            wall,
        );
        check_observe(
            Hlc::from_raw(u64::MAX),
            Some(Duration::from_millis(Hlc::MAX_MILLIS - 1_000_000)),
            wall,
        );
        // Behind the wall clock: nothing to adopt, nothing refused.
        check_observe(Hlc::new(5, 0), None, wall);
    }

    #[test]
    fn a_refused_observation_never_stalls_the_clock() {
        let clock = Clock::with_time_source(|| 1_000_000);
        assert!(clock.observe(Hlc::from_raw(u64::MAX), MINUTE).is_err());
        let mut last = clock.now();
        for _ in 0..1_000 {
            let next = clock.now();
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }

    #[test]
    fn a_wall_clock_far_behind_still_gives_increasing_values() {
        let wall = Arc::new(Mutex::new(100_000_000u64));
        let source = Arc::clone(&wall);
        let clock = Clock::with_time_source(move || *source.lock().unwrap());
        let before = clock.now();
        // The wall clock steps back a day.
        *wall.lock().unwrap() = 100_000_000 - 86_400_000;
        let after: Vec<Hlc> = (0..100).map(|_| clock.now()).collect();
        assert!(after[0] > before, "{} after {before}", after[0]);
        assert!(after.windows(2).all(|w| w[1] > w[0]));
        // Our own earlier values are never refused, though they now lie a day ahead of the wall.
        assert_eq!(clock.observe(before, MINUTE), Ok(()));
        assert_eq!(clock.beyond_drift(after[99], MINUTE), None);
        // A remote value beyond both the wall clock's bound and our last value is refused.
        let beyond = Hlc::new(after[99].millis() + 1, 0);
        assert_eq!(
            clock.observe(beyond, MINUTE),
            Err(Duration::from_millis(
                beyond.millis() - (100_000_000 - 86_400_000)
            ))
        );
        assert!(clock.now() > after[99]);
    }

    #[test]
    fn the_system_clock_is_near_the_wall_clock() {
        let clock = Clock::new();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let hlc = clock.now();
        assert!(
            hlc.millis() >= wall && hlc.millis() < wall + 1_000,
            "{hlc} vs {wall}"
        );
        assert!(Clock::global().now() < Clock::global().now());
    }

    #[test]
    fn random_writer_ids_differ() {
        assert_ne!(WriterId::random(), WriterId::random());
    }

    proptest! {
        /// Whatever the wall clock does (steps back, stands still, jumps), values only go up, and they
        /// never fall behind the wall clock.
        #[test]
        fn now_is_strictly_monotonic(steps in proptest::collection::vec((0u64..2_000_000, any::<bool>()), 1..300)) {
            let wall = Arc::new(Mutex::new(0u64));
            let source = Arc::clone(&wall);
            let clock = Clock::with_time_source(move || *source.lock().unwrap());
            let mut last = Hlc::default();
            for (millis, observe) in steps {
                *wall.lock().unwrap() = millis;
                if observe {
                    clock.observe(Hlc::new(millis / 2, 9), Duration::from_secs(60)).unwrap();
                }
                let next = clock.now();
                prop_assert!(next > last, "{next} after {last}");
                prop_assert!(next.millis() >= millis);
                last = next;
            }
        }

        /// Threads sharing one clock never see the same value twice.
        #[test]
        fn concurrent_values_are_unique(threads in 2usize..5, per_thread in 1usize..500) {
            let clock = Arc::new(Clock::with_time_source(|| 42));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let clock = Arc::clone(&clock);
                    std::thread::spawn(move || (0..per_thread).map(|_| clock.now()).collect::<Vec<_>>())
                })
                .collect();
            let mut all: Vec<Hlc> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
            let total = all.len();
            all.sort();
            all.dedup();
            prop_assert_eq!(all.len(), total);
        }
    }
}
