//! Deterministic choice of which instances a fleet subset starts or stops.
//!
//! The original tool took whichever instances the API listed first. Here the choice
//! depends only on the instances themselves (never on the order they were observed
//! in): each pick goes to the availability zone that keeps the running count most
//! even, and ties are broken by instance id.

use std::collections::{BTreeMap, VecDeque};

/// An instance as seen by the chooser: its id and availability zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot<'a> {
    pub id: &'a str,
    pub az: &'a str,
}

struct Zone<'a> {
    running: usize,
    candidates: VecDeque<&'a str>,
}

fn zones<'a>(running: &[Slot<'a>], candidates: &[Slot<'a>]) -> BTreeMap<&'a str, Zone<'a>> {
    let mut zones: BTreeMap<&str, Zone> = BTreeMap::new();
    let zone = |zones: &mut BTreeMap<&'a str, Zone<'a>>, az: &'a str| {
        zones.entry(az).or_insert_with(|| Zone {
            running: 0,
            candidates: VecDeque::new(),
        });
    };
    for s in running {
        zone(&mut zones, s.az);
        zones.get_mut(s.az).expect("just inserted").running += 1;
    }
    let mut sorted = candidates.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for s in sorted {
        zone(&mut zones, s.az);
        zones
            .get_mut(s.az)
            .expect("just inserted")
            .candidates
            .push_back(s.id);
    }
    zones
}

/// Picks `count` of the stopped `candidates` to start, given the instances already
/// `running`, so that the running count per availability zone stays as even as the
/// candidates allow.
///
/// # Guarantees
/// Returns `min(count, candidates.len())` distinct candidate ids, in pick order. The
/// result does not depend on the order of either slice. Starting from an even spread,
/// no two zones differ by more than one unless the smaller one ran out of candidates.
pub fn choose_to_start<'a>(
    running: &[Slot<'a>],
    candidates: &[Slot<'a>],
    count: usize,
) -> Vec<&'a str> {
    let mut zones = zones(running, candidates);
    let mut picked = Vec::with_capacity(count.min(candidates.len()));
    while picked.len() < count {
        let best = zones
            .values_mut()
            .filter(|z| !z.candidates.is_empty())
            .min_by(|a, b| (a.running, a.candidates[0]).cmp(&(b.running, b.candidates[0])));
        let Some(zone) = best else { break };
        picked.push(zone.candidates.pop_front().expect("non-empty"));
        zone.running += 1;
    }
    picked
}

/// Picks `count` of the `stoppable` running instances to stop, given every instance
/// `running` (stoppable or not), taking from the fullest availability zone first and,
/// within a zone, the highest instance id.
///
/// # Guarantees
/// Returns `min(count, stoppable.len())` distinct ids from `stoppable`, independent of
/// slice order.
pub fn choose_to_stop<'a>(
    running: &[Slot<'a>],
    stoppable: &[Slot<'a>],
    count: usize,
) -> Vec<&'a str> {
    let mut zones = zones(running, stoppable);
    let mut picked = Vec::with_capacity(count.min(stoppable.len()));
    while picked.len() < count {
        let best = zones
            .values_mut()
            .filter(|z| !z.candidates.is_empty())
            .max_by(|a, b| (a.running, a.candidates.back()).cmp(&(b.running, b.candidates.back())));
        let Some(zone) = best else { break };
        picked.push(zone.candidates.pop_back().expect("non-empty"));
        zone.running = zone.running.saturating_sub(1);
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots<'a>(v: &[(&'a str, &'a str)]) -> Vec<Slot<'a>> {
        v.iter().map(|&(id, az)| Slot { id, az }).collect()
    }

    #[test]
    fn start_spreads_over_zones_in_id_order() {
        let c = slots(&[
            ("i-4", "a"),
            ("i-1", "a"),
            ("i-2", "b"),
            ("i-3", "c"),
            ("i-5", "b"),
        ]);
        assert_eq!(choose_to_start(&[], &c, 4), ["i-1", "i-2", "i-3", "i-4"]);
    }

    #[test]
    fn start_fills_the_emptiest_zone_first() {
        let running = slots(&[("i-9", "a"), ("i-8", "a")]);
        let c = slots(&[("i-1", "a"), ("i-2", "b"), ("i-3", "b"), ("i-4", "c")]);
        assert_eq!(choose_to_start(&running, &c, 3), ["i-2", "i-4", "i-3"]);
    }

    #[test]
    fn stop_takes_from_the_fullest_zone() {
        let running = slots(&[("i-1", "a"), ("i-2", "a"), ("i-3", "a"), ("i-4", "b")]);
        assert_eq!(choose_to_stop(&running, &running, 2), ["i-3", "i-2"]);
    }

    #[test]
    fn asking_for_more_than_available_returns_all() {
        let c = slots(&[("i-1", "a")]);
        assert_eq!(choose_to_start(&[], &c, 5), ["i-1"]);
        assert_eq!(choose_to_stop(&c, &c, 5), ["i-1"]);
    }
}
