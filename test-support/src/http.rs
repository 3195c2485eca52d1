//! Talking to a local HTTP server the way a scraper does (one HTTP/1.0 GET), and
//! reading a Prometheus text exposition: series by name and labels, with label values
//! unescaped, so a process name holding `pid="1"` cannot pass for another series.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long an answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// GET `target` from 127.0.0.1:`port` over HTTP/1.0 (so no chunked answers): the
/// status code (0 when the answer has no status line) and the body.
pub fn http_get(port: u16, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n"
    )?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// One sample line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    /// The value of label `name`, if it has one.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of an exposition (comments and malformed lines left out).
pub fn parse_exposition(exposition: &str) -> Vec<Series> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// `name{label="value",...} value` or `name value`.
fn parse_line(line: &str) -> Option<Series> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = unescape_label_value(after)?;
            labels.insert(label.trim().to_string(), value);
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped (`\\`, `\"`, `\n`), and what follows.
fn unescape_label_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

/// The value of the unlabelled series `name`.
pub fn gauge(exposition: &str, name: &str) -> Option<f64> {
    parse_exposition(exposition)
        .into_iter()
        .find(|series| series.name == name && series.labels.is_empty())
        .map(|series| series.value)
}

/// The samples of `name` whose `pid` label is `pid`.
pub fn process_series(exposition: &str, name: &str, pid: u32) -> Vec<Series> {
    let pid = pid.to_string();
    parse_exposition(exposition)
        .into_iter()
        .filter(|series| series.name == name && series.label("pid") == Some(pid.as_str()))
        .collect()
}

/// `leakscope_process_leak` of `pid`: Some(true) judged a leak, Some(false) exported
/// and not a leak, None not exported at all.
pub fn process_leak(exposition: &str, pid: u32) -> Option<bool> {
    process_series(exposition, "leakscope_process_leak", pid)
        .first()
        .map(|series| series.value == 1.0)
}

/// Whether `pid` has a `leakscope_site_leak` series at 1 whose site label contains
/// `function`.
pub fn site_leak(exposition: &str, pid: u32, function: &str) -> bool {
    process_series(exposition, "leakscope_site_leak", pid)
        .iter()
        .any(|series| {
            series.value == 1.0 && series.label("site").is_some_and(|s| s.contains(function))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP leakscope_process_leak 1 when...\n\
        # TYPE leakscope_process_leak gauge\n\
        leakscope_process_leak{comm=\"x pid=\\\"42\\\"\",pid=\"7\"} 0\n\
        leakscope_process_leak{comm=\"mutex_leak\",exe=\"/a\\\\b\\n\",pid=\"42\"} 1\n\
        leakscope_site_leak{pid=\"42\",site=\"thread:futex:leak_on_mutex<leaked_thread\"} 1\n\
        leakscope_site_leak{pid=\"7\",site=\"thread:futex:leak_on_mutex\"} 0\n\
        leakscope_watched_processes 12\n";

    /// Check that series are found by their real labels: a comm holding `pid="42"` is
    /// not pid 42, escapes are undone, and absence is told from "not a leak".
    #[test]
    fn series_are_matched_by_parsed_labels() {
        assert_eq!(process_leak(EXPOSITION, 42), Some(true));
        assert_eq!(process_leak(EXPOSITION, 7), Some(false));
        assert_eq!(process_leak(EXPOSITION, 8), None);
        let series = &process_series(EXPOSITION, "leakscope_process_leak", 42)[0];
        assert_eq!(series.label("exe"), Some("/a\\b\n"));
        assert_eq!(
            process_series(EXPOSITION, "leakscope_process_leak", 7)[0].label("comm"),
            Some("x pid=\"42\"")
        );
        assert!(site_leak(EXPOSITION, 42, "leak_on_mutex"));
        assert!(!site_leak(EXPOSITION, 7, "leak_on_mutex"));
        assert_eq!(gauge(EXPOSITION, "leakscope_watched_processes"), Some(12.0));
        assert_eq!(gauge(EXPOSITION, "leakscope_process_leak"), None);
    }

    /// Check that a cut-off line is left out rather than misread.
    #[test]
    fn malformed_lines_are_left_out() {
        assert_eq!(parse_exposition("x{pid=\"4"), vec![]);
        assert_eq!(parse_exposition("x{pid=\"4\"} notanumber"), vec![]);
        assert_eq!(parse_exposition("x 1\n").len(), 1);
    }
}
