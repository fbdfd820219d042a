//! The blobs of a run: every distinct blob of the rollout's images, once. A layer listed by
//! two images with the same digest is one blob, so one scheduler task (one `TaskId`, one
//! task key) and one download per host, as in production, where the task is the digest.
//!
//! Blob order and keys for a scenario with one `[image]` are those of before workloads:
//! config, layers, then (p2p-lazy) the RAFS bootstrap; keys `"{reference}#{index}"`.

use crate::scenario::{Mode, Rollout, Scenario};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sched::core::hashring;
use std::collections::{BTreeMap, BTreeSet};

/// One image of the run as the engine pulls it.
#[derive(Debug, Clone)]
pub(crate) struct ImagePlan {
    pub manifest_bytes: u64,
    /// Blob of each position: config, layers..., and in p2p-lazy the bootstrap last.
    pub blobs: Vec<usize>,
    /// Positions containerd pulls (config and layers; not the bootstrap).
    pub pulled: usize,
    /// p2p-lazy: the bootstrap's blob.
    pub meta: Option<usize>,
    /// Config and layers, in bytes.
    pub bytes: u64,
    /// p2p-lazy: the startup working set as (blob, offset, len) reads.
    pub reads: Vec<(usize, u64, u64)>,
    pub reference: String,
}

impl ImagePlan {
    /// The position of `blob` in this image, if it is one of its blobs.
    pub fn position(&self, blob: usize) -> Option<usize> {
        self.blobs.iter().position(|b| *b == blob)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BlobPlan {
    /// Size of each distinct blob.
    pub blobs: Vec<u64>,
    /// Each blob's task key (its identity for the scheduler's hash ring).
    pub keys: Vec<u64>,
    pub images: Vec<ImagePlan>,
}

impl BlobPlan {
    pub fn of(rollout: &Rollout, mode: Mode, sc: &Scenario) -> BlobPlan {
        let mut plan = BlobPlan { blobs: Vec::new(), keys: Vec::new(), images: Vec::new() };
        let mut by_digest: BTreeMap<&str, usize> = BTreeMap::new();
        for image in &rollout.images {
            let name = |i: usize| format!("{}#{i}", image.reference);
            let mut blobs = vec![plan.add(image.config_bytes, hashring::key_of(name(0).as_bytes()))];
            for (j, &bytes) in image.layer_bytes.iter().enumerate() {
                let blob = match image.layer_digests.get(j) {
                    Some(d) => match by_digest.get(d.as_str()) {
                        Some(&b) => b,
                        None => {
                            let b = plan.add(bytes, hashring::key_of(d.as_bytes()));
                            by_digest.insert(d, b);
                            b
                        }
                    },
                    None => plan.add(bytes, hashring::key_of(name(1 + j).as_bytes())),
                };
                blobs.push(blob);
            }
            let bytes = image.config_bytes + image.layer_bytes.iter().sum::<u64>();
            let pulled = blobs.len();
            let reference = image.reference.clone();
            let manifest_bytes = image.manifest_bytes;
            plan.images.push(ImagePlan {
                manifest_bytes,
                blobs,
                pulled,
                meta: None,
                bytes,
                reads: Vec::new(),
                reference,
            });
        }
        if mode == Mode::P2pLazy {
            // Bootstraps after every image's blobs: one image's last blob, as before.
            for (i, image) in rollout.images.iter().enumerate() {
                let at = plan.images[i].pulled;
                let meta =
                    plan.add(sc.lazy.metadata_bytes, hashring::key_of(format!("{}#{at}", image.reference).as_bytes()));
                plan.images[i].blobs.push(meta);
                plan.images[i].meta = Some(meta);
                plan.images[i].reads = working_set(sc, i, &image.layer_bytes, &plan.images[i].blobs);
            }
        }
        plan
    }

    fn add(&mut self, bytes: u64, key: u64) -> usize {
        self.blobs.push(bytes);
        self.keys.push(key);
        self.blobs.len() - 1
    }

    /// Every distinct blob's bytes (config and layers; not bootstraps), summed.
    pub fn image_bytes_total(&self) -> u64 {
        let pulled: BTreeSet<usize> = self.images.iter().flat_map(|i| i.blobs[..i.pulled].iter().copied()).collect();
        pulled.iter().map(|b| self.blobs[*b]).sum()
    }

    /// Per blob, how many nodes need it (a node running two images sharing it counts once).
    pub fn node_blob_copies(&self, rollout: &Rollout) -> BTreeMap<usize, u64> {
        let mut nodes_of: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
        for w in &rollout.workloads {
            let image = &self.images[w.image];
            for blob in &image.blobs[..image.pulled] {
                nodes_of.entry(*blob).or_default().extend(w.nodes.iter().copied());
            }
        }
        nodes_of.into_iter().map(|(b, n)| (b, n.len() as u64)).collect()
    }
}

/// The startup working set of a lazily loaded image: `startup_working_set_fraction` of its
/// bytes in `range_read_bytes` reads, spread over the layers in proportion to their size
/// at offsets drawn from the scenario seed (and the image's index). Every node running the
/// image reads the same ranges.
fn working_set(sc: &Scenario, image: usize, layer_bytes: &[u64], blobs: &[usize]) -> Vec<(usize, u64, u64)> {
    let salt = if image == 0 { 0 } else { hashring::mix64(image as u64) };
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x0005_eed0_f5e7 ^ salt);
    let read = sc.lazy.range_read_bytes;
    let mut reads = Vec::new();
    for (i, layer) in layer_bytes.iter().enumerate() {
        let want = (*layer as f64 * sc.lazy.startup_working_set_fraction) as u64;
        let count = want.div_ceil(read).max(1);
        let slots = layer.div_ceil(read).max(1);
        let mut offsets: Vec<u64> = (0..count.min(slots)).map(|_| rng.random_range(0..slots)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        for o in offsets {
            let offset = o * read;
            reads.push((blobs[1 + i], offset, read.min(layer - offset)));
        }
    }
    reads
}
