//! Fits recorded output to the book's text column (`cargo lab record` runs it on every
//! file it writes; scripts/check-book-html.py checks the result in a browser):
//!
//! - tabs become spaces (tab stops every 8 columns, as in a terminal), and trailing
//!   blanks go;
//! - a command line (`$ ...`) longer than the width is continued on the next line with
//!   ` \`, breaking only between words outside quotes, so that it can still be pasted
//!   into a shell; a comment (`$ cmd  # why`) goes on a line of its own, before it;
//! - a table of tab-separated rows (tshark -T fields) with a row too long has every row
//!   broken after the same field, the rest continued on the next line, indented one tab;
//! - any other line too long is broken at the last space that fits and continued,
//!   indented 4 columns deeper (a word longer than the line, a hex string, is cut).
//!
//! Lines of [`WIDTH`] characters or fewer are left as they are.

/// The widest line rustfmt writes; the column holds about 107 characters at 1400 px.
pub const WIDTH: usize = 100;
const INDENT: usize = 4;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Tabs to spaces, stops every 8 columns.
fn expand_tabs(line: &str) -> String {
    let mut out = String::new();
    let mut column = 0;
    for c in line.chars() {
        if c == '\t' {
            let n = 8 - column % 8;
            out.extend(std::iter::repeat_n(' ', n));
            column += n;
        } else {
            out.push(c);
            column += 1;
        }
    }
    out
}

/// `$ cmd arg ...` as shell lines joined by ` \`, each at most `width` long.
fn break_command(line: &str, width: usize) -> Vec<String> {
    let (mut words, mut word, mut quote, mut comment) = (Vec::new(), String::new(), None, None);
    for (i, ch) in line.chars().enumerate() {
        if quote.is_none() && ch == '#' && word.is_empty() && i > 2 {
            comment = Some(line.chars().skip(i).collect::<String>());
            break;
        }
        if let Some(q) = quote {
            word.push(ch);
            if ch == q {
                quote = None;
            }
        } else if ch == '\'' || ch == '"' {
            word.push(ch);
            quote = Some(ch);
        } else if ch == ' ' {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(ch);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // An option stays on the line of its value: '-e frame.len', not '-e \'.
    let mut units: Vec<String> = Vec::new();
    for w in words {
        match units.last_mut() {
            Some(last) if last.starts_with('-') && !last.contains(' ') && !w.starts_with('-') => {
                last.push(' ');
                last.push_str(&w);
            }
            _ => units.push(w),
        }
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for w in units {
        let candidate = if current.is_empty() { w.clone() } else { format!("{current} {w}") };
        if !current.is_empty() && chars(&candidate) + 2 > width {
            out.push(format!("{current} \\"));
            current = format!("{}{w}", " ".repeat(INDENT));
        } else {
            current = candidate;
        }
    }
    out.push(current);
    if let Some(comment) = comment {
        out.insert(0, format!("$ {comment}"));
    }
    out
}

/// The last index of `c` in `s[floor..end]` (char indices), if any.
fn rfind_in(s: &[char], c: char, floor: usize, end: usize) -> Option<usize> {
    let end = end.min(s.len());
    (floor..end).rev().find(|&i| s[i] == c)
}

/// A line broken at spaces, continuation lines indented INDENT deeper.
fn break_text(line: &str, width: usize) -> Vec<String> {
    let indent = chars(line) - chars(line.trim_start_matches(' '));
    let mut lead = " ".repeat((indent + INDENT).min(width / 2));
    if line.starts_with("# ") {
        lead.replace_range(0..1, "#"); // a comment goes on as a comment
    }
    let mut out = Vec::new();
    let mut rest: Vec<char> = line.chars().collect();
    let mut first = true;
    while rest.len() > width {
        let floor = if first { indent + 1 } else { chars(&lead) + 1 };
        let cut = rfind_in(&rest, ' ', floor, width + 1);
        let (head, tail): (String, String) = match cut {
            Some(cut) if cut >= floor.max(width * 6 / 10) => {
                let head: String = rest[..cut].iter().collect();
                let tail: String = rest[cut + 1..].iter().collect();
                (head.trim_end().to_owned(), tail.trim_start_matches(' ').to_owned())
            }
            // No space, or only one far to the left, as before strace's long strings: cut
            // the word instead, before an escape such as \x00 if there is one near the end.
            _ => {
                let hard = rfind_in(&rest, '\\', width.saturating_sub(8), width + 1)
                    .filter(|&h| h > floor)
                    .unwrap_or(width);
                (rest[..hard].iter().collect(), rest[hard..].iter().collect())
            }
        };
        out.push(head);
        rest = format!("{lead}{tail}").chars().collect();
        first = false;
    }
    out.push(rest.into_iter().collect());
    out
}

fn expand_fields(fields: &[&str], indent: &str) -> String {
    expand_tabs(&format!("{indent}{}", fields.join("\t"))).trim_end().to_owned()
}

/// Tab-separated rows, some too wide: every row split after the same field.
fn break_table(rows: &[String], width: usize) -> Vec<String> {
    let split: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let mut k = 1;
    while split.iter().all(|f| chars(&expand_fields(&f[..(k + 1).min(f.len())], "")) <= width)
        && split.iter().any(|f| f.len() > k + 1)
    {
        k += 1;
    }
    let mut out = Vec::new();
    for fields in &split {
        out.extend(break_text(&expand_fields(&fields[..k.min(fields.len())], ""), width));
        let rest = &fields[k.min(fields.len())..];
        if rest.iter().any(|f| !f.is_empty()) {
            out.extend(break_text(&expand_fields(rest, "        "), width));
        }
    }
    out
}

/// `text` with every line at most `width` characters wide.
pub fn fit(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut table: Vec<String> = Vec::new();
    let flush = |table: &mut Vec<String>, lines: &mut Vec<String>| {
        if table.iter().any(|row| chars(expand_tabs(row).trim_end()) > width) {
            lines.extend(break_table(table, width));
        } else {
            lines.extend(table.iter().map(|row| expand_tabs(row).trim_end().to_owned()));
        }
        table.clear();
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().contains('\t') && !line.starts_with("$ ") {
            table.push(line.to_owned());
            continue;
        }
        flush(&mut table, &mut lines);
        let expanded = expand_tabs(line);
        if chars(&expanded) <= width {
            lines.push(expanded);
        } else if line.starts_with("$ ") {
            lines.extend(break_command(&expanded, width));
        } else {
            lines.extend(break_text(&expanded, width));
        }
    }
    flush(&mut table, &mut lines);
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Fits each of `files` in place (those already fitted are left untouched).
pub fn fit_files(files: &[std::path::PathBuf]) -> Result<(), String> {
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let fitted = fit(&text, WIDTH);
        if fitted != text {
            std::fs::write(file, fitted).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every recording of the book is already fitted (by cargo lab record or cargo lab vm
    /// record, both with this code): fitting changes nothing.
    #[test]
    fn the_books_recordings_are_fitted() {
        let dir = crate::repo_root().join("book/src/output");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("book/src/output") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into());
            // The benchmark's tables are markdown, which the book lays out itself.
            if name.starts_with("bench") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            assert_eq!(fit(&text, WIDTH), text, "{} is not fitted", path.display());
            checked += 1;
        }
        assert!(checked > 50, "only {checked} recordings found");
    }

    #[test]
    fn short_lines_stay_and_tabs_expand() {
        assert_eq!(fit("a\tb  \n", 100), "a       b\n");
    }

    #[test]
    fn a_long_command_is_continued_with_a_backslash() {
        let line = format!("$ tshark -r x.pcap {}", "-e field.name ".repeat(10));
        let out = fit(&line, 60);
        assert!(out.lines().all(|l| l.chars().count() <= 60), "{out}");
        assert!(out.lines().next().unwrap().ends_with(" \\"));
        assert!(out.contains("-e field.name"), "an option stays with its value: {out}");
    }

    #[test]
    fn a_long_text_line_breaks_at_a_space_and_indents() {
        let out = fit(&"word ".repeat(30), 40);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1 && lines[1].starts_with("    word"), "{out}");
    }

    #[test]
    fn a_wide_table_splits_every_row_after_the_same_field() {
        let rows = format!("{}\n{}\n", ["aaaaaaaaaa"; 8].join("\t"), ["b"; 8].join("\t"));
        let out = fit(&rows, 50);
        assert!(out.lines().all(|l| l.chars().count() <= 50), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        // Both rows broken after the same field: "b" lines up under "aaaaaaaaaa".
        assert!(lines[0].starts_with("aaaaaaaaaa      aaaaaaaaaa"), "{out}");
        let b = lines.iter().position(|l| l.starts_with('b')).expect("the second row");
        assert_eq!(
            lines[0].split_whitespace().count(),
            lines[b].split_whitespace().count(),
            "{out}"
        );
        assert!(lines[1].starts_with("        "), "the rest of a row is indented: {out}");
    }
}
