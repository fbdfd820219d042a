//! Preheat jobs (`[[workload]] preheat_at_s`), paced as the deployed seed runs them: the
//! scheduler orders a job of an image from one seed peer, picked by rendezvous hashing of
//! the image over the seeds; the seed reads the image's manifest at the registry, then
//! fetches every blob as a seed download (registered at the scheduler, back to source),
//! `blobs_in_flight` at a time, and runs `jobs_in_flight` jobs at once
//! (`peer::core::PreheatLimits`, the daemon's `[preheat]`).

use std::collections::{BTreeMap, VecDeque};

use super::{Event, EventQueue, ImagePlan, TimeNs, World};
use crate::scenario::Rollout;
use peer::core::PreheatLimits;
use sched::core::{hashring, PeerId};

pub(super) struct PreheatJob {
    pub image: usize,
    /// The seed peer's host.
    pub seed: usize,
    pub ordered_ns: TimeNs,
    pub done_ns: Option<TimeNs>,
    next: usize,
    in_flight: usize,
    fetched: usize,
}

#[derive(Default)]
pub(super) struct Preheats {
    pub jobs: Vec<PreheatJob>,
    limits: PreheatLimits,
    /// Per seed (host - first seed host): jobs running, and those waiting their turn.
    running: Vec<usize>,
    waiting: Vec<VecDeque<usize>>,
    /// A seed download jobs wait for, by peer id: the jobs (two images may share a blob).
    waits: BTreeMap<u32, Vec<usize>>,
}

impl Preheats {
    /// One job per image some workload preheats (at the earliest such `preheat_at_s`), queued
    /// in `queue`; none without seed peers (oci).
    pub(super) fn plan(
        rollout: &Rollout,
        images: &[ImagePlan],
        limits: PreheatLimits,
        seeds: std::ops::Range<usize>,
        queue: &mut EventQueue,
    ) -> Preheats {
        let mut p = Preheats {
            limits,
            running: vec![0; seeds.len()],
            waiting: vec![VecDeque::new(); seeds.len()],
            ..Preheats::default()
        };
        if seeds.is_empty() {
            return p;
        }
        let mut at_of: BTreeMap<usize, TimeNs> = BTreeMap::new();
        for wl in &rollout.workloads {
            if let Some(at) = wl.preheat_ns {
                let e = at_of.entry(wl.image).or_insert(at);
                *e = (*e).min(at);
            }
        }
        for (image, at) in at_of {
            let key = hashring::key_of(images[image].reference.as_bytes());
            let seed = hashring::pick(key, seeds.clone().map(|h| (h, h as u64))).expect("seeds is not empty");
            p.jobs.push(PreheatJob { image, seed, ordered_ns: at, done_ns: None, next: 0, in_flight: 0, fetched: 0 });
            queue.push(at, Event::PreheatOrdered { job: p.jobs.len() - 1 });
        }
        p
    }
}

impl World<'_> {
    /// The seed takes the job now, or after the jobs it runs.
    pub(super) fn preheat_ordered(&mut self, job: usize) {
        let seed = self.preheats.jobs[job].seed - self.n_nodes;
        if self.preheats.running[seed] < self.preheats.limits.jobs_in_flight {
            self.preheats.running[seed] += 1;
            self.preheat_read_manifest(job);
        } else {
            self.preheats.waiting[seed].push_back(job);
        }
    }

    fn preheat_read_manifest(&mut self, job: usize) {
        let at = self.registry_admit();
        self.queue.push(at, Event::PreheatResolved { job });
    }

    /// The seed read the job's manifest: it asks for the blobs.
    pub(super) fn preheat_resolved(&mut self, job: usize) {
        self.preheat_next(job);
    }

    /// A seed download of a preheat job completed.
    pub(super) fn preheat_peer_finished(&mut self, peer: PeerId) {
        for job in self.preheats.waits.remove(&peer.0).unwrap_or_default() {
            let j = &mut self.preheats.jobs[job];
            j.in_flight -= 1;
            j.fetched += 1;
            self.preheat_next(job);
        }
    }

    fn preheat_next(&mut self, job: usize) {
        let (image, seed) = (self.preheats.jobs[job].image, self.preheats.jobs[job].seed);
        let count = self.images[image].blobs.len();
        while self.preheats.jobs[job].in_flight < self.preheats.limits.blobs_in_flight
            && self.preheats.jobs[job].next < count
        {
            let blob = self.images[image].blobs[self.preheats.jobs[job].next];
            self.preheats.jobs[job].next += 1;
            let peer = self.open_peer_task(seed, blob, true, None);
            if self.peers[peer.0 as usize].done {
                self.preheats.jobs[job].fetched += 1;
            } else {
                self.preheats.jobs[job].in_flight += 1;
                self.preheats.waits.entry(peer.0).or_default().push(job);
            }
        }
        let j = &mut self.preheats.jobs[job];
        if j.fetched == count && j.done_ns.is_none() {
            j.done_ns = Some(self.now);
            let s = seed - self.n_nodes;
            self.preheats.running[s] -= 1;
            if let Some(next) = self.preheats.waiting[s].pop_front() {
                self.preheats.running[s] += 1;
                self.preheat_read_manifest(next);
            }
        }
    }
}
