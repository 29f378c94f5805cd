//! `cargo lab fuzz`: fuzz the responder and the parsers with libFuzzer (cargo fuzz) for a
//! given time, and say how many inputs ran without a finding.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use tapbook_lab::{cargo, ensure_packages, repo_root, say, tell};

use crate::{Result, number, split_option, value};

const USAGE: &str = "\
Usage: cargo lab fuzz [OPTIONS]

Run a fuzz target for a while. The default, fuzz/fuzz_targets/respond.rs: libFuzzer feeds
respond() and every parser (and what 02 and 05 print) with inputs it mutates
towards new code paths, and the oracle of the property tests (testkit/src/oracle/)
judges every outcome. A finding is a panic (an out-of-bounds access, an integer
overflow: the target is built with overflow checks) or a reply that is wrong,
longer than its request, to a group address or to a frame that deserves none,
or a missing reply to a frame that deserves one.

The other, fuzz/fuzz_targets/offloads.rs (--target offloads, chapter 9): a
virtio-net header and a frame for the header parser, the checksum completion and
the superframe cutter; a finding is a panic, or a segment longer than its
gso_size or with a checksum that does not verify. And fuzz/fuzz_targets/udp_dhcp.rs
(--target udp_dhcp, chapter 10): UDP echo judged by the oracle, the DHCP server's
replies and lease table checked.

The corpus (fuzz/corpus/TARGET/, not in git) is seeded with the kernel's frames
from tests/fixtures/ (for offloads: behind the virtio-net header they were read
with, and behind an empty one) and grows from run to run. At the end it prints
the number of executions and the time, and exits 0 if there was no finding; a
finding is saved under fuzz/artifacts/TARGET/ with the command to replay it.

Installs cargo-fuzz first if it is missing (cargo install; scripts/packages.txt,
group fuzz). Works with the stable toolchain: no sanitizer is used by default
(the code under test has no unsafe block, so every memory error would already be
a bounds-check panic). No network, no root: it runs anywhere, a network
namespace included.

Options:
  --target T        respond (default), offloads or udp_dhcp
  --seconds N       how long to fuzz (default: 60)
  --max-len N       the longest input in bytes (default: 9100: a frame for MTU
                    9000, plus the control byte)
  --jobs N          run N fuzzing processes in parallel (default: 1)
  --sanitizer S     none (default) or address (needs nightly, or RUSTC_BOOTSTRAP=1
                    with a toolchain that ships the ASan runtime)
  -h, --help        this help

Example (the figure in the closing note of issue 4):  cargo lab fuzz --seconds 600
Chapter 9's target:                                  cargo lab fuzz --target offloads
";

pub fn main(args: &[String]) -> Result<ExitCode> {
    let (mut target, mut sanitizer) = ("respond".to_owned(), "none".to_owned());
    let (mut seconds, mut max_len, mut jobs) = (60, 9100, 1);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (option, inline) = split_option(arg);
        match option {
            "-h" | "--help" => {
                say(USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--seconds" => seconds = number(option, &value(option, inline, &mut rest)?)?,
            "--max-len" => max_len = number(option, &value(option, inline, &mut rest)?)?,
            "--jobs" => jobs = number(option, &value(option, inline, &mut rest)?)?,
            "--target" => {
                target = value(option, inline, &mut rest)?;
                if !["respond", "offloads", "udp_dhcp"].contains(&target.as_str()) {
                    return Err(format!("--target: respond, offloads or udp_dhcp, not '{target}'"));
                }
            }
            "--sanitizer" => {
                sanitizer = value(option, inline, &mut rest)?;
                if sanitizer != "none" && sanitizer != "address" {
                    return Err(format!("--sanitizer: none or address, not '{sanitizer}'"));
                }
            }
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab fuzz --help)")),
        }
    }
    ensure_packages("cargo lab fuzz", &["fuzz"])?;
    let root = repo_root();
    let corpus = Path::new("fuzz/corpus").join(&target);
    let artifacts = Path::new("fuzz/artifacts").join(&target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let seeded = seed(&root, &root.join(&corpus), &target)?;
    say(format_args!(
        "Seeded {} with {seeded} inputs from tests/fixtures/ ({} in the corpus).",
        corpus.display(),
        files(&root.join(&corpus)).len()
    ));

    let fuzz_args = ["--sanitizer", &sanitizer, "--debug-assertions", "--release"];
    say(format_args!(
        "Building the fuzz target (cargo fuzz build {} {target})...",
        fuzz_args.join(" ")
    ));
    let built = cargo()
        .args(["fuzz", "build"])
        .args(fuzz_args)
        .arg(&target)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("running cargo fuzz: {e}"))?;
    if !built.success() {
        return Err(format!("cargo fuzz build failed ({built})"));
    }

    let mut libfuzzer = vec![
        format!("-max_total_time={seconds}"),
        format!("-max_len={max_len}"),
        "-print_final_stats=1".to_owned(),
        format!("-artifact_prefix={}/", artifacts.display()),
    ];
    if jobs > 1 {
        // Fork mode: N worker processes that share the corpus; the stats add up.
        libfuzzer.push(format!("-fork={jobs}"));
    }
    say(format_args!("Fuzzing for {seconds} s with {jobs} process(es)..."));
    let started = SystemTime::now();
    let clock = Instant::now();
    let run = cargo()
        .args(["fuzz", "run"])
        .args(fuzz_args)
        .arg(&target)
        .arg(&corpus)
        .arg("--")
        .args(&libfuzzer)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cargo fuzz: {e}"))?;
    let elapsed = clock.elapsed().as_secs();
    let log =
        format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    // libFuzzer's own summary: "stat::number_of_executed_units: N" (single process), or
    // the last "#N ... exec/s" status line (fork mode prints no final stats).
    let execs = log
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(|n| n.trim().to_owned())
        .next_back()
        .or_else(|| {
            log.lines()
                .filter_map(|l| l.strip_prefix('#')?.split_whitespace().next())
                .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
                .map(str::to_owned)
                .next_back()
        })
        .unwrap_or_else(|| "?".into());
    let coverage = log
        .lines()
        .filter_map(|l| {
            let at = l.find("cov: ")?;
            let words: Vec<&str> = l[at..].split_whitespace().take(4).collect();
            (words.len() == 4 && words[2] == "ft:").then(|| words.join(" "))
        })
        .next_back()
        .unwrap_or_else(|| "coverage not reported".into());

    say("");
    if run.status.success() {
        say(format_args!(
            "No finding: {execs} executions in {elapsed} s ({coverage}; corpus: {} inputs).",
            files(&root.join(&corpus)).len()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let telling = ["== ERROR", "panicked at", "SUMMARY", "Test unit written", "outcome "];
    for line in log
        .lines()
        .filter(|l| l.starts_with("thread") || telling.iter().any(|t| l.contains(t)))
        .take(40)
    {
        tell(line);
    }
    tell(format_args!(
        "FINDING after {execs} executions in {elapsed} s (exit status {}).",
        run.status
    ));
    let found: Vec<PathBuf> = files(&root.join(&artifacts))
        .into_iter()
        .filter(|f| f.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= started))
        .collect();
    for file in &found {
        let file = file.strip_prefix(&root).unwrap_or(file).display();
        tell(format_args!("  saved: {file}"));
        tell(format_args!("  replay: cargo fuzz run {} {target} {file}", fuzz_args.join(" ")));
    }
    if found.is_empty() {
        let lines: Vec<&str> = log.lines().collect();
        tell(lines[lines.len().saturating_sub(30)..].join("\n"));
    }
    Ok(ExitCode::FAILURE)
}

/// The files in `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_file()).collect()
        })
        .unwrap_or_default()
}

/// Writes a seed into `corpus` for every captured frame of tests/fixtures/, behind each
/// control prefix of `target`; how many.
///
/// The first byte of a respond input is the target's control byte (see respond.rs): 00
/// takes the frame as it is, 03 repairs both checksums after the fuzzer's mutations, 04
/// answers ARP only. For udp_dhcp: 03 repairs both checksums, 07 also lends an address
/// first (see udp_dhcp.rs). For offloads, the first 12 bytes are the virtio-net header: the one
/// a superframe's fixture names in its comment ("virtio-net header 01 05 2a 00 ..."),
/// and all zeroes (a frame with nothing to do) for every fixture.
fn seed(root: &Path, corpus: &Path, target: &str) -> Result<usize> {
    let mut fixtures: Vec<PathBuf> = files(&root.join("tests/fixtures"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    fixtures.sort();
    let mut seeded = 0;
    for fixture in fixtures {
        let text = std::fs::read_to_string(&fixture)
            .map_err(|e| format!("reading {}: {e}", fixture.display()))?;
        let frame: String = text.lines().filter(|l| !l.starts_with('#')).collect();
        let mut prefixes: Vec<String> = match target {
            "respond" => vec!["00".into(), "03".into(), "04".into()],
            "udp_dhcp" => vec!["03".into(), "07".into()],
            _ => vec!["00".repeat(12)],
        };
        if target == "offloads"
            && let Some(header) = virtio_header(&text)
        {
            prefixes.push(header);
        }
        let name = fixture.file_stem().unwrap_or_default().to_string_lossy();
        for prefix in prefixes {
            let bytes = hex(&format!("{prefix}{frame}"))
                .ok_or_else(|| format!("{}: not hex", fixture.display()))?;
            let seed = corpus.join(format!("seed-{name}-{}", &prefix[..6.min(prefix.len())]));
            std::fs::write(&seed, bytes).map_err(|e| format!("writing {}: {e}", seed.display()))?;
            seeded += 1;
        }
    }
    Ok(seeded)
}

/// The 12 bytes after "virtio-net header " in a fixture's comments, as hex digits.
fn virtio_header(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let after = line.split_once("virtio-net header ")?.1;
        let bytes: Vec<&str> = after.split(' ').take(12).collect();
        let ok = bytes.len() == 12
            && bytes.iter().all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        ok.then(|| bytes.concat())
    })
}

/// The bytes of a string of hex digits, blanks ignored.
fn hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_names_its_virtio_header() {
        let text = "# a superframe, read with virtio-net header 01 05 2a 00 b6 05 22 00 10 00 \
                    01 00 (gso tcpv4)\n0a0b\n";
        assert_eq!(virtio_header(text).as_deref(), Some("01052a00b605220010000100"));
        assert_eq!(virtio_header("# Frame bytes only (no virtio-net header), as written"), None);
    }

    #[test]
    fn hex_turns_into_bytes() {
        assert_eq!(hex("00 ff\n0a"), Some(vec![0, 0xff, 0x0a]));
        assert_eq!(hex("0g"), None);
        assert_eq!(hex("abc"), None);
    }
}
