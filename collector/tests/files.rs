//! The file sink end to end: pcap files per VNI, read back by tshark.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// Frames tshark reads from `file` (and their largest size).
fn tshark_frames(file: &Path) -> (usize, usize) {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(file)
        .args(["-T", "fields", "-e", "frame.len"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark -r {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let lens: Vec<usize> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    (lens.len(), lens.iter().copied().max().unwrap_or(0))
}

/// Our files, by VNI (from the file name).
fn files_by_vni(dir: &Path) -> BTreeMap<u32, Vec<std::path::PathBuf>> {
    let mut by = BTreeMap::<u32, Vec<_>>::new();
    for e in std::fs::read_dir(dir).expect("read the files dir").filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let vni = name.strip_prefix("vni").and_then(|r| r.split('-').next()).and_then(|v| v.parse().ok());
        by.entry(vni.unwrap_or_else(|| panic!("unexpected file {name}"))).or_default().push(e.path());
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_hold_exactly_the_frames_counted_per_vni() {
    let dir = temp_dir("files");
    let d = dir.display().to_string();
    let c = collector(&["--files-dir", &d, "--vni-allow", "7,9"]).await;
    let mut seven = traffic(40100, 300, 2000);
    let mut tcp = Tcp::new(40101, 80, 8960);
    tcp.handshake();
    seven.extend(tcp.client_sends(&vec![b'j'; 8960])); // one 9000-MTU frame
    let nine = traffic(40102, 120, 500);
    send_vxlan(c.vxlan_addr, 7, &seven);
    send_vxlan(c.vxlan_addr, 9, &nine);
    send_vxlan(c.vxlan_addr, 8, &nine[..10]); // not allowed
    let want = (seven.len() + nine.len()) as u64;
    assert!(eventually(WAIT, || c.metrics.written_count("file") == want).await);
    let (r7, r9) = (c.metrics.received(7, "vxlan"), c.metrics.received(9, "vxlan"));
    assert_eq!((r7, r9), (seven.len() as u64, nine.len() as u64));
    assert_eq!(c.metrics.malformed_count("vni_not_allowed"), 10);
    c.shutdown().await; // flushes and closes the files

    let by = files_by_vni(&dir);
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), [7, 9], "one series per allowed VNI");
    for (vni, counted) in [(7, r7), (9, r9)] {
        let (frames, max) = by[&vni].iter().map(|f| tshark_frames(f)).fold((0, 0), |a, b| (a.0 + b.0, a.1.max(b.1)));
        assert_eq!(frames as u64, counted, "vni {vni}: tshark reads exactly the frames counted");
        if vni == 7 {
            assert_eq!(max, 9014, "the 9000-MTU frame is whole");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_size_and_age_keeps_the_limits() {
    let dir = temp_dir("rotation");
    let d = dir.display().to_string();
    let flags =
        ["--files-dir", &d, "--files-max-file-bytes", "20000", "--files-keep", "3", "--files-keep-bytes", "50000"];
    let c = collector(&flags).await;
    let frames = traffic(40110, 400, 3000);
    send_vxlan(c.vxlan_addr, 7, &frames);
    assert!(eventually(WAIT, || c.metrics.written_count("file") == 400).await);
    assert!(eventually(WAIT, || c.metrics.files_removed.get() > 0).await);
    let rotated = c.metrics.files_rotated.get();
    c.shutdown().await;
    let files = &files_by_vni(&dir)[&7];
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    assert!(files.len() <= 3, "{} files kept", files.len());
    assert!(bytes <= 50_000 + 20_000, "{bytes} bytes kept");
    for f in files {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 20_000, "{} is {size} bytes", f.display());
        assert!(tshark_frames(f).0 > 0);
    }
    let written: usize = frames.iter().map(|f| 16 + f.len()).sum();
    assert!(rotated as usize >= written / 20_000, "{rotated} rotations for {written} bytes");
    let _ = std::fs::remove_dir_all(&dir);

    // By age: a file older than --files-max-age-secs is closed.
    let dir = temp_dir("age");
    let d = dir.display().to_string();
    let c = collector(&["--files-dir", &d, "--files-max-age-secs", "1"]).await;
    send_vxlan(c.vxlan_addr, 5, &frames[..10]);
    assert!(eventually(WAIT, || c.metrics.files_rotated.get() == 1).await, "closed after a second");
    send_vxlan(c.vxlan_addr, 5, &frames[10..20]);
    assert!(eventually(WAIT, || c.metrics.written_count("file") == 20).await);
    c.shutdown().await;
    let files = &files_by_vni(&dir)[&5];
    assert_eq!(files.len(), 2);
    assert_eq!(files.iter().map(|f| tshark_frames(f).0).sum::<usize>(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_queue_drops_and_counts_but_receiving_goes_on() {
    let dir = temp_dir("queue");
    let d = dir.display().to_string();
    // A queue of 4 copies: the writer cannot keep up with a burst.
    let c = collector(&["--files-dir", &d, "--files-queue", "4"]).await;
    let frames = traffic(40120, 3000, 3000);
    send_vxlan(c.vxlan_addr, 7, &frames);
    assert!(eventually(WAIT, || c.metrics.received(7, "vxlan") == 3000).await, "receiving never stalls");
    // `written` counts records on disk: wait for the writer to finish the queue.
    let settled = || c.metrics.written_count("file") + c.metrics.dropped_count("file") == 3000;
    assert!(eventually(WAIT, settled).await, "every copy is written or counted");
    let written = c.metrics.written_count("file");
    c.shutdown().await;
    let on_disk: usize = files_by_vni(&dir)[&7].iter().map(|f| tshark_frames(f).0).sum();
    assert_eq!(on_disk as u64, written, "the files hold exactly the copies counted as written");
    let _ = std::fs::remove_dir_all(&dir);
}
