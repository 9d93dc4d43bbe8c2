//! The reading loop: drains the probes' ring buffer into an `EventSink`, with each event's
//! kernel stack from the stack map, until a signal or the sink stops; counts lost events.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
}

/// No periodic work.
pub struct NoPeriodic;

impl Periodic for NoPeriodic {
    fn tick(&mut self) -> Vec<(u64, String)> {
        Vec::new()
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
        .ebpf_mut()
        .take_map(maps::STACKS.name)
        .map(StackTraceMap::try_from)
        .transpose()
        .map_err(RingError::StackMap)?;
    let lost_map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
        obj.ebpf_mut()
            .take_map(maps::LOST.name)
            .ok_or(RingError::NoLostMap)?,
    )?;
    let mut lost = LostEvents::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Probes wake us only once a batch is waiting (maps::EVENTS_WAKEUP_BYTES): collect
    // the rest on this timer.
    let mut poll = tokio::time::interval(RING_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut frames: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain_ring(guard.get_inner_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
                guard.clear_ready();
                sink.drained()?;
            }
            _ = poll.tick() => {
                if drain_ring(ring.get_mut(), stacks.as_ref(), &mut frames, sink, stop)? > 0 {
                    sink.drained()?;
                }
            }
            _ = tick.tick() => {
                let newly = observe_lost(&lost_map, &mut lost);
                sink.lost(newly, lost.total())?;
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
    // What the probes wrote since the last poll.
    drain_ring(ring.get_mut(), stacks.as_ref(), &mut frames, sink, stop)?;
    let newly = observe_lost(&lost_map, &mut lost);
    sink.lost(newly, lost.total())?;
    sink.drained()?;
    Ok(lost.total())
}

/// How often the event loop reads the ring buffer without being woken up.
pub const RING_POLL_INTERVAL: Duration = Duration::from_millis(100);

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
