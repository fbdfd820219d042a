//! `dfget --range`: exactly the bytes asked for, lazily (only the covering pieces) without
//! a digest, after checking the whole content with one; bad ranges refused with exit 2.

use e2e::cluster::{self, dfget, start_peer, start_scheduler, PeerOptions};
use e2e::origin_server::Origin;
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn dfget_writes_exactly_the_range() {
    let dir = cluster::test_dir("dfget-range");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(16 * MIB + 5, 11));
    let url = origin.put("/blobs/r.bin", data.clone());
    let digest = format!("sha256:{}", cluster::sha256_hex(&data));
    let sched = start_scheduler(&dir);
    let options = PeerOptions { piece_bytes: 1 << 20, ..Default::default() };
    let mut peer = start_peer(&dir, "peer", Some(&sched.grpc), &options);
    let out = dir.join("part");

    // Lazy: two pieces of sixteen (and a neighbour) from the origin, not the whole file.
    let r = dfget(&peer.local_api, &url, &out, &["--range", "1048570-2097160"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data[1_048_570..=2_097_160]);
    let served = origin.bytes_served("/blobs/r.bin");
    assert!(served < 8 * MIB as u64, "the origin served {served} bytes for a 2 MiB range");

    // To the end.
    let r = dfget(&peer.local_api, &url, &out, &["--range", &format!("{}-", 16 * MIB)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data[16 * MIB..]);

    // With the digest: the whole content is checked, the range written.
    let r = dfget(&peer.local_api, &url, &out, &["--range", "10-19", "--digest", &digest]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data[10..20]);
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let r = dfget(&peer.local_api, &url, &dir.join("never"), &["--range", "10-19", "--digest", &wrong]);
    assert!(!r.status.success());
    assert!(!dir.join("never").exists(), "no partial output");

    // Bad ranges: exit 2 with the reason; the output is not touched.
    std::fs::write(&out, b"old").unwrap();
    for (range, says) in [("5-2", "before the start"), ("x-1", "expected N-M"), ("-5", "expected N-M")] {
        let r = dfget(&peer.local_api, &url, &out, &["--range", range]);
        assert_eq!(r.status.code(), Some(2), "{range}");
        assert!(String::from_utf8_lossy(&r.stderr).contains(says), "{range}: {}", String::from_utf8_lossy(&r.stderr));
    }
    let r = dfget(&peer.local_api, &url, &out, &["--range", &format!("{}-", 17 * MIB)]);
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("the content has"), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");

    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole content: a hard link to the daemon's file by default (no second copy), a
/// private copy with `--copy`; an edit of the linked output is caught by the daemon's
/// re-hash of what it reads from disk, so a later client still gets the right bytes.
#[test]
fn dfget_links_the_whole_content_or_copies_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = cluster::test_dir("dfget-link");
    let origin = Origin::start();
    let data = Arc::new(cluster::random_bytes(6 * MIB + 3, 12));
    let url = origin.put("/blobs/l.bin", data.clone());
    let digest = format!("sha256:{}", cluster::sha256_hex(&data));
    let sched = start_scheduler(&dir);
    let options = PeerOptions { piece_bytes: 1 << 20, ..Default::default() };
    let mut peer = start_peer(&dir, "peer", Some(&sched.grpc), &options);

    let linked = dir.join("linked");
    let r = dfget(&peer.local_api, &url, &linked, &["--digest", &digest]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&linked).unwrap(), *data);
    assert!(std::fs::metadata(&linked).unwrap().nlink() >= 2, "the output is not a link to the daemon's file");

    let copied = dir.join("copied");
    let r = dfget(&peer.local_api, &url, &copied, &["--digest", &digest, "--copy"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&copied).unwrap(), *data);
    assert_eq!(std::fs::metadata(&copied).unwrap().nlink(), 1, "--copy made a link");

    // Edit the linked output in place (the daemon's content with it): the daemon's next
    // read re-hashes, drops the piece and fetches it again, which repairs the file too.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&linked).unwrap();
        f.seek(SeekFrom::Start(2 * MIB as u64 + 7)).unwrap();
        f.write_all(b"edited").unwrap();
    }
    let again = dir.join("again");
    let r = dfget(&peer.local_api, &url, &again, &["--digest", &digest]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&again).unwrap(), *data, "the daemon handed out edited bytes");
    peer.proc.stop(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}
