//! No heap allocation per frame, shown two ways:
//! - in process: a counting global allocator around exactly what `05_full_responder`
//!   does for each frame (respond, count, pcap record, the two summary lines), over every
//!   captured frame and a set of damaged ones;
//! - end to end: `05_full_responder` run under valgrind, flooded with 10 and then with
//!   10 000 pings: the total number of allocations must not change.

use tapbook_lab as common;
use tapbook_lab::require_lab;
use tapbook_testkit::fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufWriter, Write};

use tapbook::pcap::PcapWriter;
use tapbook::respond::{Counters, Idents};
use tapbook::serve::{FrameLog, Responder, Sent};
use tapbook::{FRAME_BUFFER_LEN, Host, Services};

// ANCHOR: counting_allocator
/// Passes every request on to the system allocator, counting the allocations made by the
/// current thread (the test harness runs other tests on other threads at the same time).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: a thread being torn down may still free (and so allocate) after its
    // thread-locals are gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System`, which upholds GlobalAlloc's contract; the
// counting touches only a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// How many allocations `f` made on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}
// ANCHOR_END: counting_allocator

const US: Host = Host {
    ip: std::net::Ipv4Addr::new(172, 16, 1, 2),
    ip6: tapbook::cli::DEFAULT_IP6,
    mac: tapbook::wire::MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
};

/// Every frame in tests/fixtures (captured from the kernel), plus damaged copies that
/// take the responder down its drop paths.
fn frames() -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = fixtures::all().into_iter().map(|(_, frame)| frame).collect();
    let ping = fixtures::load("icmp_echo_request_56");
    for (offset, value) in [(0, 0xffu8), (6, 0x01), (12, 0x86), (14, 0x46), (22, 0x00), (40, 0x77)]
    {
        let mut damaged = ping.clone();
        damaged[offset] = value;
        frames.push(damaged);
    }
    frames.push(ping[..20].to_vec());
    // Options: a Record Route and a Timestamp to fill in, and a malformed one (which gets
    // an ICMP Parameter Problem).
    let mut bad = fixtures::load("kernel_echo_request_rr");
    bad[36] = 40;
    bad[24..26].fill(0);
    let sum = tapbook::wire::checksum::checksum(&bad[14..74]);
    bad[24..26].copy_from_slice(&sum.to_be_bytes());
    frames.push(bad);
    frames
}

#[test]
fn the_counting_allocator_sees_an_allocation() {
    // Without this, a broken counter would make the next test pass whatever happens.
    let n = allocations_in(|| {
        std::hint::black_box(Box::new(7u64));
    });
    assert_eq!(n, 1);
}

// ANCHOR: no_alloc_test
#[test]
fn the_receive_reply_path_allocates_nothing() {
    let frames = frames();
    // Set up as 05_full_responder does, before its loop: buffers, the responder's state,
    // the pcap writer and the output buffer. Writing to a Vec of fixed capacity that is
    // emptied after each frame stands for the BufWriter that 05 flushes when idle; the
    // kernel takes every reply.
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let pcap = PcapWriter::new(BufWriter::with_capacity(64 * 1024, std::io::sink()))
        .expect("writing a pcap header to a sink");
    let out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut log = FrameLog { pcap: Some(pcap), out, quiet: false };
    let mut responder = Responder {
        host: US,
        services: Services::ALL,
        idents: Idents::random(),
        counters: Counters::default(),
    };

    // The per-frame work of 05_full_responder, the same function it calls.
    let mut per_frame = || {
        for request in &frames {
            responder
                .serve_frame(request, &mut reply, &mut log, |_| Ok(Sent::Taken))
                .expect("to a sink and a Vec");
            assert!(log.out.len() > 20, "a summary was written");
            log.out.clear();
        }
    };
    per_frame(); // once to warm up, then count
    let n = allocations_in(|| {
        for _ in 0..100 {
            per_frame();
        }
    });
    assert_eq!(n, 0, "allocations for {} frames", 100 * frames.len());

    // The final report of the counters, too, formats without allocating.
    let counters = &responder.counters;
    let mut out = log.out;
    let n = allocations_in(|| write!(out, "{counters}").expect("writing into a Vec"));
    assert_eq!(n, 0);
    let report = String::from_utf8_lossy(&out);
    assert!(report.contains("frames dropped"), "{report}");
    assert!(counters.echo_replies > 0 && counters.arp_replies > 0 && counters.total_dropped() > 0);
    assert!(counters.parameter_problems > 0, "the malformed option was answered");
}
// ANCHOR_END: no_alloc_test

/// `valgrind` reports "total heap usage: N allocs, M frees, B bytes allocated" at exit.
fn heap_allocs(valgrind_log: &str) -> Option<u64> {
    let line = valgrind_log.lines().find(|l| l.contains("total heap usage:"))?;
    let n = line.split("total heap usage:").nth(1)?.split_whitespace().next()?;
    n.replace(',', "").parse().ok()
}

/// Runs 05_full_responder (per-frame output and a pcap on, the busiest path) under
/// valgrind, floods it with `count` pings and returns how many allocations it made.
fn allocations_for_pings(count: u32) -> u64 {
    let bin = env!("CARGO_BIN_EXE_05_full_responder");
    let mut lab = common::Lab::new("noalloc");
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    // A permanent neighbour entry: no ARP exchange, so that both runs see the same kinds
    // of frame, only more or fewer of them.
    lab.pin_responder("tap4");
    // At start, 05 looks for its namespace's name in /run/netns (for the fixes its
    // messages print), one allocation per entry it reads: other tests add and remove
    // namespaces meanwhile. In a private mount namespace with an empty /run/netns, both
    // runs start alike, and only the frames differ.
    let script = format!(
        "if [ -d /run/netns ]; then mount -t tmpfs tb-empty /run/netns; fi; \
         exec valgrind --tool=memcheck --leak-check=no {bin} --pcap '{}'",
        pcap.display()
    );
    let mut responder =
        lab.start("unshare", &["--mount", "--propagation", "private", "sh", "-c", &script], None);
    let out = lab.ping(&["-f", "-q", "-l", "8", "-c", &count.to_string(), common::RESPONDER_IP]);
    let (sent, received) = common::ping_counts(&out);
    assert_eq!((sent, received), (count, count), "{}", String::from_utf8_lossy(&out.stdout));
    let (status, output) = responder.stop();
    let _ = std::fs::remove_file(&pcap);
    assert!(status.is_some_and(|s| s.success()), "05 under valgrind:\n{output}");
    let stdout = responder.stdout_text();
    assert!(
        stdout.contains(&format!("{count:>10}  ICMP echo replies sent")),
        "05 did not count {count} replies:\n{stdout}"
    );
    heap_allocs(&responder.stderr_text())
        .unwrap_or_else(|| panic!("no heap summary from valgrind:\n{output}"))
}

// ANCHOR: valgrind_test
#[test]
fn full_responder_allocations_do_not_grow_with_the_number_of_frames() {
    require_lab!("full_responder_allocations_do_not_grow_with_the_number_of_frames", "valgrind");
    let few = allocations_for_pings(10);
    let many = allocations_for_pings(10_000);
    eprintln!(
        "05_full_responder under valgrind: {few} allocations for 10 pings, {many} for 10 000"
    );
    assert_eq!(few, many, "allocations after 10 pings: {few}; after 10 000: {many}");
}
// ANCHOR_END: valgrind_test
