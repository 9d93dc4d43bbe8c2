//! The reading loop: drains the probes' ring buffer into an `EventSink`, with each event's
//! kernel stack from the stack map, until a signal or the sink stops; counts lost events.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{MapData, MapError, PerCpuArray, RingBuf, StackTraceMap};

use crate::output::sections::stack::StackId;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::{DecodeError, EventSink, Flow, LostEvents};
use crate::load::{LoadedObject, ObjectError};
use crate::probes::maps;

/// Why the reading loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("polling the ring buffer")]
    Poll(#[source] io::Error),
    #[error("opening the stack map")]
    StackMap(#[source] MapError),
    #[error("lost-events map missing")]
    NoLostMap,
    #[error(transparent)]
    LostMap(#[from] MapError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Waiting for the ring buffer, or the sink writing the output.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Work the reading loop does once a second besides reading, e.g. attaching probes to
/// BPF programs loaded meanwhile.
pub trait Periodic {
    /// Does it; returns the probes it attached, as (probe address, name) for the sink.
    fn tick(&mut self) -> Vec<(u64, String)>;
    /// Whether there is work at all: without it (and without a sink that holds output
    /// back by time) an idle tracer sleeps until the probes wake it.
    fn active(&self) -> bool {
        true
    }
}

/// No periodic work.
pub struct NoPeriodic;

impl Periodic for NoPeriodic {
    fn tick(&mut self) -> Vec<(u64, String)> {
        Vec::new()
    }
    fn active(&self) -> bool {
        false
    }
}

/// Reads the ring buffer into `sink` until a signal, the sink says stop, or an error,
/// running `periodic` once a second; returns the number of events the kernel could not
/// queue.
pub async fn event_loop(
    obj: &mut LoadedObject,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
    wake: &Notify,
    periodic: &mut dyn Periodic,
) -> Result<u64, RingError> {
    let ring: RingBuf<MapData> = obj.take_ring_buf(maps::EVENTS.name)?;
    // SAFETY: the AsyncFd owns the RingBuf, which owns the fd, so the fd stays open for
    // as long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| RingError::Poll(e.into()))?;
    let stacks: Option<StackTraceMap<MapData>> = obj
        .take_map(maps::STACKS.name)
        .map(StackTraceMap::try_from)
        .transpose()
        .map_err(RingError::StackMap)?;
    let lost_map: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(obj.take_map(maps::LOST.name).ok_or(RingError::NoLostMap)?)?;
    let mut lost = LostEvents::new();
    // A timer runs only for work that needs one; otherwise the loop sleeps until the
    // probes' adaptive wakeup (first unread record) or a signal.
    let clocked = periodic.active() || sink.holds_back_by_time();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Losses happen only while events come: checked after reading, at most once a second,
    // and once more a second after the last read.
    let mut lost_checked = Instant::now();
    let mut lost_due: Option<Instant> = None;
    let mut frames: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                // Readiness is cleared before reading: a record committed after this
                // read wakes us again, one committed before is read now.
                guard.clear_ready();
                let read = drain_ring(guard.get_inner_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
                sink.drained()?;
                if read > 0 {
                    if lost_checked.elapsed() >= LOST_CHECK_INTERVAL {
                        lost_checked = Instant::now();
                        lost_due = None;
                        sink.lost(observe_lost(&lost_map, &mut lost), lost.total())?;
                    } else if lost_due.is_none() {
                        lost_due = Some(lost_checked + LOST_CHECK_INTERVAL);
                    }
                    // Under a flood, let a batch gather: the records of this window
                    // arrive without waking anyone (the reader is behind), and this
                    // thread is off the ring's wait queue meanwhile.
                    std::thread::sleep(BATCH_WINDOW);
                }
            }
            _ = sleep_until_due(lost_due) => {
                lost_checked = Instant::now();
                lost_due = None;
                sink.lost(observe_lost(&lost_map, &mut lost), lost.total())?;
            }
            _ = tick.tick(), if clocked => {
                for (addr, name) in periodic.tick() {
                    sink.probe_named(addr, name);
                }
                // what the sink holds back by time (ended journeys) goes out on a quiet
                // trace too
                sink.drained()?;
            }
            _ = wake.notified() => {}
        }
    }
    // What the probes wrote since the last read.
    drain_ring(ring.get_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
    let newly = observe_lost(&lost_map, &mut lost);
    sink.lost(newly, lost.total())?;
    sink.drained()?;
    Ok(lost.total())
}

/// Under a flood, the reader reads at most once per window: one wakeup per batch instead
/// of one per record. The first record after a quiet moment is read at once.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// How often lost events are counted while events come.
const LOST_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Waits until `due`, or forever when there is nothing due.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Hands every record in the ring buffer to `sink` (until it says stop); returns how
/// many were read.
fn drain_ring(
    rb: &mut RingBuf<MapData>,
    stacks: Option<&StackTraceMap<MapData>>,
    frames: &mut Vec<u64>,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<usize, RingError> {
    let mut n = 0;
    while let Some(item) = rb.next() {
        let event = super::decode(&item)?;
        drop(item);
        n += 1;
        frames.clear();
        if let (Some(id), Some(stacks)) = (event.get::<StackId>().map(|s| s.0), stacks) {
            if let Ok(trace) = u32::try_from(id).map(|id| stacks.get(&id, 0)) {
                frames.extend(
                    trace
                        .iter()
                        .flat_map(|t| t.frames())
                        .map(|f| f.ip)
                        .filter(|ip| *ip != 0),
                );
            }
        }
        if sink.event(&event, Some(frames))? == Flow::Stop {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    Ok(n)
}

fn observe_lost(map: &PerCpuArray<MapData, u64>, lost: &mut LostEvents) -> u64 {
    match map.get(&0, 0) {
        Ok(values) => lost.observe(&values.iter().copied().collect::<Vec<u64>>()),
        Err(_) => 0,
    }
}
